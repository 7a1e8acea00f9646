"""What the operator loads at start and may not: libraries only some presets
need are imported when first used, so an idle operator does not carry them
(docs/benchmarks.md, "Restart and memory": the idle RSS goal)."""

from __future__ import annotations

from tests.unit.import_probe import loaded_after

# croniter: 3.5 MiB of RSS at import, needed only by presets with schedules.
NOT_AT_START = ("croniter",)


def test_starting_the_operator_does_not_load_what_only_schedules_need() -> None:
    assert loaded_after("prewarm.run, prewarm.handlers.registrations", NOT_AT_START) == []


def test_a_schedule_still_works_once_loaded_on_first_use() -> None:
    from datetime import UTC, datetime

    from prewarm.planning.schedule import Schedule, desired_instances, next_schedule_check

    now = datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
    office = Schedule(cron="* 9-17 * * 1-5", instances=10)
    assert desired_instances(3, [office], "Europe/Berlin", now).instances == 10
    assert next_schedule_check(3, [office], "UTC", now) == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
