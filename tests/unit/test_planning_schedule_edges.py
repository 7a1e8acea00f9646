"""Schedules at their edges (issue 15): minute boundaries, DST changes, instants
given in another zone, and waking up when the wanted count changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from prewarm.planning.schedule import Schedule, desired_instances, next_schedule_check

BERLIN = "Europe/Berlin"
MS = timedelta(milliseconds=1)


def _want(cron: str, now: datetime, zone: str = "UTC", default: int = 1) -> int:
    return desired_instances(default, [Schedule(cron, 5)], zone, now).instances


# -- minute boundaries ---------------------------------------------------------------------


def test_a_schedule_holds_from_the_first_to_the_last_instant_of_its_minute() -> None:
    nine = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    assert _want("0 9 * * *", nine - MS) == 1
    assert _want("0 9 * * *", nine) == 5
    assert _want("0 9 * * *", nine + timedelta(seconds=59, microseconds=999_999)) == 5
    assert _want("0 9 * * *", nine + timedelta(minutes=1)) == 1


def test_an_hour_range_ends_with_its_last_minute() -> None:
    start = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    assert _want("* 9-17 * * *", start - MS) == 1
    assert _want("* 9-17 * * *", start) == 5
    assert _want("* 9-17 * * *", datetime(2026, 6, 1, 17, 59, 59, tzinfo=UTC)) == 5
    assert _want("* 9-17 * * *", datetime(2026, 6, 1, 18, 0, tzinfo=UTC)) == 1


# -- instants in another zone --------------------------------------------------------------


def test_an_instant_given_in_another_zone_is_the_same_instant() -> None:
    # 09:00 in Tokyo is 19:00 the day before in New York (EST).
    tokyo_nine = datetime(2026, 1, 1, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert _want("* 19 31 12 *", tokyo_nine, "America/New_York") == 5
    assert _want("* 9 1 1 *", tokyo_nine, "America/New_York") == 1
    # A fixed offset, not a named zone: 14:30 at +05:30 is 09:00 UTC.
    india = datetime(2026, 1, 1, 14, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert _want("0 9 * * *", india, "UTC") == 5
    assert _want("30 14 * * *", india, "Asia/Kolkata") == 5


def test_a_naive_instant_is_refused_rather_than_read_in_the_machines_zone() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        desired_instances(1, [Schedule("* * * * *", 5)], BERLIN, datetime(2026, 1, 1, 9, 0))


# -- daylight saving time (Europe/Berlin: 29 March 2026 02:00 -> 03:00, 25 October 03:00 -> 02:00)


def test_office_hours_follow_the_wall_clock_across_a_dst_change() -> None:
    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
    assert _want("* 9-17 * * *", datetime(2026, 3, 28, 7, 59, tzinfo=UTC), BERLIN) == 1
    assert _want("* 9-17 * * *", datetime(2026, 3, 28, 8, 0, tzinfo=UTC), BERLIN) == 5
    assert _want("* 9-17 * * *", datetime(2026, 3, 30, 6, 59, tzinfo=UTC), BERLIN) == 1
    assert _want("* 9-17 * * *", datetime(2026, 3, 30, 7, 0, tzinfo=UTC), BERLIN) == 5


def test_a_minute_skipped_by_spring_forward_never_matches_that_day() -> None:
    # 01:59 CET is 00:59 UTC; the next minute is 03:00 CEST (01:00 UTC).
    night = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
    assert not any(
        _want("30 2 * * *", night + timedelta(minutes=m), BERLIN) == 5 for m in range(180)
    )
    assert _want("* 1-3 * * *", datetime(2026, 3, 29, 0, 59, tzinfo=UTC), BERLIN) == 5
    assert _want("* 1-3 * * *", datetime(2026, 3, 29, 1, 0, tzinfo=UTC), BERLIN) == 5


def test_a_minute_repeated_by_fall_back_matches_both_times() -> None:
    # 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET).
    day = datetime(2026, 10, 25, tzinfo=UTC)
    matching = [
        m for m in range(240) if _want("30 2 * * *", day + timedelta(minutes=m), BERLIN) == 5
    ]
    assert matching == [30, 90]


# -- when the wanted count changes next ------------------------------------------------------


def test_the_next_change_is_the_boundary_of_the_minute_the_count_changes() -> None:
    schedules = [Schedule("* 9-17 * * *", 5)]
    now = datetime(2026, 6, 1, 8, 58, 20, tzinfo=UTC)
    assert next_schedule_check(1, schedules, "UTC", now) == datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    inside = datetime(2026, 6, 1, 17, 59, 59, tzinfo=UTC)
    assert next_schedule_check(1, schedules, "UTC", inside) == datetime(
        2026, 6, 1, 18, 0, tzinfo=UTC
    )


def test_the_next_change_is_in_the_presets_zone_and_follows_dst() -> None:
    schedules = [Schedule("0 9 * * *", 5)]
    # Berlin 09:00 on 30 March 2026 (CEST) is 07:00 UTC.
    now = datetime(2026, 3, 30, 6, 30, tzinfo=UTC)
    assert next_schedule_check(1, schedules, BERLIN, now) == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    # ... and it lasts one minute.
    assert next_schedule_check(
        1, schedules, BERLIN, datetime(2026, 3, 30, 7, 0, 5, tzinfo=UTC)
    ) == (datetime(2026, 3, 30, 7, 1, tzinfo=UTC))


def test_nothing_to_check_without_usable_schedules() -> None:
    now = datetime(2026, 6, 1, 8, 58, tzinfo=UTC)
    assert next_schedule_check(1, [], "UTC", now) is None
    assert next_schedule_check(1, [Schedule("0 0 31 2 *", 5)], "UTC", now) is None
    assert next_schedule_check(1, [Schedule("* 9 * * *", 5)], "Nowhere/City", now) is None


def test_a_count_that_stays_beyond_the_lookahead_is_looked_at_again_then() -> None:
    # Always matching: no change within the hour, so look again in an hour
    # (not never: the schedule could end just after the lookahead).
    now = datetime(2026, 6, 1, 8, 58, 30, tzinfo=UTC)
    check = next_schedule_check(1, [Schedule("* * * * *", 5)], "UTC", now)
    assert check == datetime(2026, 6, 1, 9, 58, tzinfo=UTC)
    # A schedule asking for the default count changes nothing either.
    assert next_schedule_check(5, [Schedule("* 9 * * *", 5)], "UTC", now) == check


def test_a_change_far_away_is_found_by_its_cron_not_by_walking_minutes() -> None:
    yearly = [Schedule("0 0 1 1 *", 5)]
    now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert next_schedule_check(1, yearly, "UTC", now) == datetime(2027, 1, 1, tzinfo=UTC)


def test_a_preset_wakes_itself_for_its_next_schedule_change() -> None:
    # Before, only the periodic resync (30 s by default, and configurable
    # upwards) noticed a schedule: a one-minute window could be missed.
    from prewarm.api.preset import Prebuilds
    from prewarm.planning.schedule import schedule_wakeup

    prebuilds = Prebuilds.model_validate(
        {"instances": 1, "timezone": BERLIN, "schedules": [{"cron": "0 9 * * *", "instances": 4}]}
    )
    now = datetime(2026, 3, 30, 6, 59, 50, tzinfo=UTC)
    assert schedule_wakeup(prebuilds, now) == 10.5
    assert schedule_wakeup(Prebuilds(instances=3), now) is None
