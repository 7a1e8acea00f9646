"""Time-based desired counts: the first schedule whose cron matches `now` wins.

A schedule is a 5-field cron expression read as a set of minutes: it matches
when `now`, in the preset's timezone, falls in one of them (so `* 9-17 * * 1-5`
means office hours). An invalid expression or timezone never breaks the loop:
it is reported (a condition and an Event) and the preset's default count
applies; so is a cron that can never fire (`0 0 31 2 *`), which would
otherwise look like a schedule that simply is not due yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from prewarm.api import reasons


@dataclass(frozen=True)
class Schedule:
    cron: str
    instances: int


@dataclass(frozen=True)
class ScheduleProblem:
    """Why schedules are (partly) ignored: a condition reason and its message."""

    reason: str  # UnknownTimezone | InvalidCron | CronNeverFires
    message: str


@dataclass(frozen=True)
class DesiredCount:
    instances: int
    schedule_index: int | None = None  # which schedule applied, if any
    problem: str | None = None  # why a schedule was ignored, for a condition
    problem_reason: str | None = None  # the first problem's kind (ScheduleProblem.reason)

    @property
    def schedule_problem(self) -> ScheduleProblem | None:
        if self.problem is None or self.problem_reason is None:
            return None
        return ScheduleProblem(self.problem_reason, self.problem)


@lru_cache(maxsize=1024)
def _never_fires(cron: str) -> bool:
    """No minute in 50 years matches (croniter's search horizon): `0 0 31 2 *`.

    The calendar repeats within 28 years (400 for century leap days), so
    a cron that fires at all fires within the horizon; `0 0 29 2 *` does.
    """
    try:
        croniter(cron, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        return True
    return False


def desired_instances(
    default: int, schedules: Sequence[Schedule], timezone: str, now: datetime
) -> DesiredCount:
    if not schedules:
        return DesiredCount(default)
    problems: list[tuple[str, str]] = []  # (reason, message)
    try:
        local: datetime | None = now.astimezone(ZoneInfo(timezone or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        local = None
        problems.append(
            (reasons.REASON_UNKNOWN_TIMEZONE, f"unknown timezone {timezone!r}; schedules ignored")
        )
    usable: list[tuple[int, Schedule]] = []
    for index, schedule in enumerate(schedules):
        if not croniter.is_valid(schedule.cron) or len(schedule.cron.split()) != 5:
            problems.append(
                (
                    reasons.REASON_INVALID_CRON,
                    f"schedules[{index}].cron {schedule.cron!r} is not a 5-field cron",
                )
            )
        elif _never_fires(schedule.cron):
            problems.append(
                (
                    reasons.REASON_CRON_NEVER_FIRES,
                    f"schedules[{index}].cron {schedule.cron!r} can never fire "
                    "(no such date); it is ignored",
                )
            )
        else:
            usable.append((index, schedule))
    problem = "; ".join(m for _, m in problems) or None
    problem_reason = problems[0][0] if problems else None
    if local is not None:
        minute = local.replace(second=0, microsecond=0, tzinfo=None)
        for index, schedule in usable:
            if croniter.match(schedule.cron, minute):
                return DesiredCount(schedule.instances, index, problem, problem_reason)
    return DesiredCount(default, None, problem, problem_reason)
