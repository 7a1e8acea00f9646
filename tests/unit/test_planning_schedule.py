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
