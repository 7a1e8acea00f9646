"""Time-based desired counts: the first schedule whose cron matches `now` wins.

A schedule is a 5-field cron expression read as a set of minutes: it matches
when `now`, in the preset's timezone, falls in one of them (so `* 9-17 * * 1-5`
means office hours). An invalid expression or timezone never breaks the loop:
it is reported (a condition and an Event) and the preset's default count
applies; so is a cron that can never fire (`0 0 31 2 *`), which would
otherwise look like a schedule that simply is not due yet.

Minutes are wall-clock minutes of the zone: across a DST change, `* 9-17`
follows the clock; a minute that spring-forward skips never matches that
day, and one that fall-back repeats matches both times. `now` must be
timezone-aware (any zone: it is an instant); a naive one is refused rather
than read in the machine's zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prewarm.api import reasons
from prewarm.api.preset import Prebuilds

if TYPE_CHECKING:
    from croniter import croniter as Croniter


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


def _croniter() -> type[Croniter]:
    """croniter, imported when a preset has schedules: at import it costs 3.5 MiB
    of RSS (its tables), which an operator without schedules never needs
    (docs/benchmarks.md, "Restart and memory"). Python caches the module."""
    from croniter import croniter

    return croniter


@lru_cache(maxsize=1024)
def _never_fires(cron: str) -> bool:
    """No minute in 50 years matches (croniter's search horizon): `0 0 31 2 *`.

    The calendar repeats within 28 years (400 for century leap days), so
    a cron that fires at all fires within the horizon; `0 0 29 2 *` does.
    """
    from croniter import CroniterBadDateError

    try:
        _croniter()(cron, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        return True
    return False


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"timezone-aware datetime required, got {now!r}")


def desired_instances(
    default: int, schedules: Sequence[Schedule], timezone: str, now: datetime
) -> DesiredCount:
    _require_aware(now)
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
        if not _croniter().is_valid(schedule.cron) or len(schedule.cron.split()) != 5:
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
            if _croniter().match(schedule.cron, minute):
                return DesiredCount(schedule.instances, index, problem, problem_reason)
    return DesiredCount(default, None, problem, problem_reason)


# How far ahead a pass looks minute by minute for a change of the wanted count.
LOOKAHEAD = timedelta(hours=1)
_MINUTE = timedelta(minutes=1)


def next_schedule_check(
    default: int, schedules: Sequence[Schedule], timezone: str, now: datetime
) -> datetime | None:
    """When a pass must look at the schedules again (UTC), or None if they can
    never change the wanted count (none usable, or an unknown timezone).

    The start of the minute the wanted count changes, when that is within
    LOOKAHEAD; otherwise an earlier instant to look again: the end of the
    lookahead while a schedule matches, else the next minute a schedule starts.
    A pass that requeues itself for this instant applies a schedule on time
    however long the resync period is.
    """
    _require_aware(now)
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    return _next_check(default, tuple(schedules), timezone, minute)


@lru_cache(maxsize=1024)
def _next_check(
    default: int, schedules: tuple[Schedule, ...], timezone: str, minute: datetime
) -> datetime | None:
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return None
    usable = [s for s in schedules if _usable(s.cron)]
    if not usable:
        return None
    current = _count_at(default, usable, zone, minute)
    steps = int(LOOKAHEAD / _MINUTE)
    for step in range(1, steps + 1):
        if _count_at(default, usable, zone, minute + step * _MINUTE) != current:
            return minute + step * _MINUTE
    horizon = minute + LOOKAHEAD
    local = _wall_minute(horizon, zone)
    if any(_croniter().match(s.cron, local) for s in usable):
        return horizon
    starts = [_croniter()(s.cron, local).get_next(datetime) for s in usable]
    return min(start.replace(tzinfo=zone).astimezone(UTC) for start in starts)


def _usable(cron: str) -> bool:
    return _croniter().is_valid(cron) and len(cron.split()) == 5 and not _never_fires(cron)


def _wall_minute(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(second=0, microsecond=0, tzinfo=None)


def _count_at(default: int, usable: Sequence[Schedule], zone: ZoneInfo, instant: datetime) -> int:
    local = _wall_minute(instant, zone)
    return next((s.instances for s in usable if _croniter().match(s.cron, local)), default)


def schedule_wakeup(prebuilds: Prebuilds, now: datetime) -> float | None:
    """Seconds until a preset's pass must look at its schedules again
    (next_schedule_check, half a second late so the minute has surely begun)."""
    schedules = [Schedule(s.cron, s.instances) for s in prebuilds.schedules]
    check = next_schedule_check(prebuilds.instances, schedules, prebuilds.timezone, now)
    return None if check is None else (check - now).total_seconds() + 0.5
