"""Time-based desired counts: the first schedule whose cron matches `now` wins.

A schedule is a 5-field cron expression read as a set of minutes: it matches
when `now`, in the preset's timezone, falls in one of them (so `* 9-17 * * 1-5`
means office hours). An invalid expression or timezone never breaks the loop:
it is reported and the preset's default count applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter


@dataclass(frozen=True)
class Schedule:
    cron: str
    instances: int


@dataclass(frozen=True)
class DesiredCount:
    instances: int
    schedule_index: int | None = None  # which schedule applied, if any
    problem: str | None = None  # why a schedule was ignored, for a condition


def desired_instances(
    default: int, schedules: Sequence[Schedule], timezone: str, now: datetime
) -> DesiredCount:
    if not schedules:
        return DesiredCount(default)
    try:
        local = now.astimezone(ZoneInfo(timezone or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        return DesiredCount(default, problem=f"unknown timezone {timezone!r}; schedules ignored")
    problems: list[str] = []
    for index, schedule in enumerate(schedules):
        if not croniter.is_valid(schedule.cron) or len(schedule.cron.split()) != 5:
            problems.append(f"schedules[{index}].cron {schedule.cron!r} is not a 5-field cron")
            continue
        if croniter.match(schedule.cron, local.replace(second=0, microsecond=0, tzinfo=None)):
            return DesiredCount(
                schedule.instances, schedule_index=index, problem="; ".join(problems) or None
            )
    return DesiredCount(default, problem="; ".join(problems) or None)
