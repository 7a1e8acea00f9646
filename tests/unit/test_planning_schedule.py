from __future__ import annotations

from datetime import UTC, datetime

from prewarm.planning.schedule import Schedule, desired_instances

# Friday 27 Nov 2026, 08:30 UTC = 09:30 in Berlin.
NOW = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
OFFICE = Schedule(cron="* 9-17 * * 1-5", instances=10)
NIGHT = Schedule(cron="* 0-6 * * *", instances=0)


def test_no_schedule_means_the_default() -> None:
    assert desired_instances(3, [], "UTC", NOW).instances == 3


def test_timezone_decides_which_schedule_matches() -> None:
    assert desired_instances(3, [OFFICE], "Europe/Berlin", NOW).instances == 10
    assert desired_instances(3, [OFFICE], "UTC", NOW).instances == 3


def test_first_match_wins() -> None:
    result = desired_instances(3, [OFFICE, Schedule("* * * * *", 7)], "Europe/Berlin", NOW)
    assert (result.instances, result.schedule_index) == (10, 0)
    result = desired_instances(3, [NIGHT, Schedule("* * * * *", 7)], "Europe/Berlin", NOW)
    assert (result.instances, result.schedule_index) == (7, 1)


def test_invalid_cron_is_reported_and_skipped() -> None:
    result = desired_instances(3, [Schedule("not a cron", 9), OFFICE], "Europe/Berlin", NOW)
    assert result.instances == 10
    assert result.problem is not None
    assert "schedules[0]" in result.problem


def test_unknown_timezone_falls_back_to_default() -> None:
    result = desired_instances(3, [OFFICE], "Mars/Olympus", NOW)
    assert result.instances == 3
    assert result.problem is not None
    assert "Mars/Olympus" in result.problem


# Issue 12, item 10: a schedule problem names its kind, for a condition and an Event.


def test_item10_unknown_timezone_is_a_problem_with_its_reason() -> None:
    result = desired_instances(3, [OFFICE], "Mars/Olympus", NOW)
    assert result.problem_reason == "UnknownTimezone"


def test_item10_a_cron_that_can_never_fire_is_reported_and_the_others_apply() -> None:
    result = desired_instances(3, [Schedule("0 0 31 2 *", 5), OFFICE], "Europe/Berlin", NOW)
    assert result.instances == 10
    assert result.problem_reason == "CronNeverFires"
    assert result.problem is not None
    assert "schedules[0]" in result.problem
    assert "0 0 31 2 *" in result.problem


def test_item10_rare_crons_are_no_problem() -> None:
    for cron in ("0 0 29 2 *", "0 0 31 2 MON", "* * 31 * *"):
        result = desired_instances(3, [Schedule(cron, 5)], "UTC", NOW)
        assert (result.problem, result.problem_reason) == (None, None), cron


def test_item10_every_problem_is_named_the_first_gives_the_reason() -> None:
    result = desired_instances(3, [Schedule("* * 30 2 *", 5)], "Mars/Olympus", NOW)
    assert result.instances == 3
    assert result.problem_reason == "UnknownTimezone"
    assert result.problem is not None
    assert "Mars/Olympus" in result.problem
    assert "* * 30 2 *" in result.problem
