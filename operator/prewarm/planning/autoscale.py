"""Demand mode (spec.prebuilds.autoscale): the warm count from claim arrivals
and build times, pure.

The model (docs/concepts.md, "Demand mode"): every claim that takes a warm
workspace starts a replacement build, which takes T seconds. A pool kept at
n is then a loss system with n servers: a warm slot is "busy" while its
replacement builds, and a claim that arrives while all n are busy finds no
Ready workspace (a miss, a cold build). With Poisson arrivals of rate λ that
is the Erlang loss system M/G/n/n, whose blocking probability is Erlang B,
B(n, λ·T), and depends on the holding time T only through its mean
(insensitivity). T is how long a taken slot really stays empty: from the
claim binding the workspace to its replacement's Ready, which is the build
plus the operator's reaction (seeing the slot taken, creating the
replacement), measured in the ledger for the latest warm claims; never
less than the build alone (create -> Ready of the latest builds). We use a
high quantile (p90) instead of the mean, to stay on the safe side of slow
builds and of an estimate drawn from few samples. The count is the
smallest n whose B(n, λ·T) is at most the target, clamped to [min, max].

The rate is the larger of the rate over the whole window and over its last
quarter, so that a burst raises the count within a quarter window while a
quiet spell has to last the whole window to lower it. On top of that,
hysteresis: the count is the highest count recommended during the last
scaleDownDelay (the HPA's scale-down stabilisation window): it rises at once
and falls as the higher recommendations age out of the delay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from prewarm.api.preset import Autoscale, AutoscaleStatus, Prebuilds, PresetStatus
from prewarm.planning.schedule import DesiredCount, Schedule, desired_instances

# The short window is this fraction of the whole one (a burst shows within it).
SHORT_WINDOW_FRACTION = 0.25


class AutoscaleReason(StrEnum):
    """Why the chosen count is what it is (status.autoscale.reason)."""

    DEMAND = "Demand"  # the model's count
    AT_MIN = "AtMin"  # the model wants fewer: min holds
    AT_MAX = "AtMax"  # the model wants more: max caps it
    SCHEDULE_FLOOR = "ScheduleFloor"  # a matching schedule's instances is higher
    HOLDING = "ScaleDownDelayed"  # lower count wanted, waiting out scaleDownDelay
    NO_DEMAND_DATA = "NoDemandData"  # no ledger: the last count (or min) holds
    NO_BUILD_DATA = "NoBuildData"  # no build of this template has been Ready yet


@dataclass(frozen=True)
class AutoscaleConfig:
    """spec.prebuilds.autoscale, with a matching schedule's floor applied."""

    min: int
    max: int
    target_miss_ratio: float
    window: timedelta
    scale_down_delay: timedelta
    # A matching schedule's instances while autoscale is on: the floor for its window.
    schedule_floor: int | None = None


@dataclass(frozen=True)
class Demand:
    """What the ledger says, read at `read_at` (one query, ledger/queries.py)."""

    arrivals: int  # claims requested in the window
    arrivals_recent: int  # of those, in the window's last quarter
    misses: int  # of those, cold (found no warm workspace)
    build_samples: int  # Ready builds of the current template the quantiles are from
    build_p50_s: float | None
    build_p90_s: float | None
    read_at: datetime
    # The latest warm claims: claim bound -> replacement Ready, the time the
    # slot stayed empty (the build plus the operator's reaction), p90.
    slot_samples: int = 0
    slot_p90_s: float | None = None


@dataclass(frozen=True)
class Hold:
    """The scale-down hysteresis between passes (operator memory; a restart
    simply starts the delay again).

    `recommended` holds the recommendations of the last scaleDownDelay that
    may still be the highest: (when, count), oldest first, each count higher
    than every later one. A recommendation lower than a later one can never
    be the maximum again, so the memory stays as small as the distinct counts.
    """

    recommended: tuple[tuple[datetime, int], ...] = ()


@dataclass(frozen=True)
class AutoscaleDecision:
    desired: int
    reason: AutoscaleReason
    recommended: int  # the model's count this pass, before the hysteresis
    arrivals_per_minute: float | None
    predicted_miss_ratio: float | None  # Erlang B at `desired`
    hold: Hold
    message: str


def erlang_b(servers: int, load: float) -> float:
    """Blocking probability of M/G/n/n with offered load `load` (erlangs)."""
    if load <= 0:
        return 0.0
    b = 1.0
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    return b


def smallest_pool(load: float, target: float, ceiling: int) -> int:
    """The smallest n <= ceiling with erlang_b(n, load) <= target (ceiling if none)."""
    if load <= 0:
        return 0
    b = 1.0
    for n in range(ceiling + 1):
        if n:
            b = load * b / (n + load * b)
        if b <= target:
            return n
    return ceiling


def arrival_rate(demand: Demand, window: timedelta) -> float:
    """Claims per second: the larger of the whole window's rate and its last quarter's."""
    seconds = window.total_seconds()
    whole = demand.arrivals / seconds
    recent = demand.arrivals_recent / (seconds * SHORT_WINDOW_FRACTION)
    return max(whole, recent)


def holding_time(demand: Demand) -> float | None:
    """Seconds a taken slot stays empty (the servers' holding time, p90): the
    measured claim -> replacement Ready if there is one, never less than the
    build alone (create -> Ready); None without a measured build time."""
    if demand.build_p90_s is None:
        return None
    return max(demand.build_p90_s, demand.slot_p90_s or 0.0)


def recommend(demand: Demand, config: AutoscaleConfig) -> tuple[int, float] | None:
    """(the model's count within [floor, ceiling], its offered load), or None
    without a measured build time."""
    held = holding_time(demand)
    if held is None:
        return None
    load = arrival_rate(demand, config.window) * held
    floor, ceiling = bounds(config)
    return max(floor, smallest_pool(load, config.target_miss_ratio, ceiling)), load


def bounds(config: AutoscaleConfig) -> tuple[int, int]:
    """[floor, ceiling]: min/max, a matching schedule raising the floor (and the
    ceiling with it if it is above max)."""
    floor = max(config.min, config.schedule_floor or 0)
    return floor, max(config.max, floor)


def decide_autoscale(
    config: AutoscaleConfig,
    demand: Demand | None,
    previous: int | None,
    hold: Hold,
    now: datetime,
) -> AutoscaleDecision:
    """The warm count demand mode keeps this pass.

    `previous` is the count it chose last (status.desired while autoscale
    decided it), None the first time; `hold` is its scale-down memory.
    """
    floor, ceiling = bounds(config)
    rate = arrival_rate(demand, config.window) if demand is not None else None
    per_minute = None if rate is None else round(rate * 60, 3)
    rec = None if demand is None else recommend(demand, config)
    if demand is None or rec is None:
        # Nothing to size the pool by: the last count (or the floor) holds.
        held = _clamp(previous if previous is not None else floor, floor, ceiling)
        if demand is None:
            reason = AutoscaleReason.NO_DEMAND_DATA
            why = "no claim data (the ledger is not available)"
        else:
            reason, why = AutoscaleReason.NO_BUILD_DATA, "no Ready build of this template yet"
        return AutoscaleDecision(
            held, reason, held, per_minute, None, Hold(), f"{why}: holding {held}"
        )
    recommended, load = rec
    current = _clamp(previous if previous is not None else recommended, floor, ceiling)
    held_up, new_hold = hysteresis(recommended, current, hold, now, config.scale_down_delay)
    desired = min(held_up, ceiling)  # a max lowered since: its cap holds at once
    holding = desired > recommended
    miss = round(erlang_b(desired, load), 4)
    reason = _reason(config, desired, load, holding, ceiling)
    message = (
        f"{per_minute:g} claims/min x slot empty p90 {holding_time(demand) or 0:.1f}s "
        f"(build p90 {demand.build_p90_s:.1f}s) = "
        f"{load:.2f} busy; {desired} warm -> predicted miss ratio {miss:g} "
        f"(target {config.target_miss_ratio:g})"
    )
    if holding:
        message += f"; {recommended} would do, held for scaleDownDelay"
    return AutoscaleDecision(desired, reason, recommended, per_minute, miss, new_hold, message)


def hysteresis(
    recommended: int, current: int, hold: Hold, now: datetime, delay: timedelta
) -> tuple[int, Hold]:
    """The highest count recommended during the last `delay`: up at once, down
    as the higher recommendations age out (the HPA's stabilisation window).
    Without a memory (the first pass, a restart) the count found counts as
    recommended now, so a restart never drops the pool at once."""
    seen = hold.recommended or ((now, current),)
    live = [(at, n) for at, n in seen if now - at < delay and n > recommended]
    kept = (*live, (now, recommended))
    return max(n for _, n in kept), Hold(kept)


def _reason(
    config: AutoscaleConfig, desired: int, load: float, holding: bool, ceiling: int
) -> AutoscaleReason:
    if holding:
        return AutoscaleReason.HOLDING
    unbounded = smallest_pool(load, config.target_miss_ratio, ceiling + 1)
    if desired == ceiling and unbounded > ceiling:
        return AutoscaleReason.AT_MAX
    if config.schedule_floor is not None and desired == config.schedule_floor > unbounded:
        return AutoscaleReason.SCHEDULE_FLOOR
    if desired == config.min and unbounded < config.min:
        return AutoscaleReason.AT_MIN
    return AutoscaleReason.DEMAND


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def next_read_in(read_at: float | None, now: float, interval: float) -> float:
    """Seconds until the demand should be read again (monotonic clock); 0: now."""
    if read_at is None:
        return 0.0
    return max(0.0, read_at + interval - now)


def demand_wakeup(read_at: float | None, now: float, interval: float, answered: bool) -> float:
    """Seconds until a pass in demand mode comes back for its next read (half a
    second late). Without an answer this pass (no ledger) one interval on, not
    at once: a pass without the ledger comes back anyway (LEDGER_DOWN_RETRY_S)."""
    due = next_read_in(read_at, now, interval) if answered else interval
    return due + 0.5


@dataclass(frozen=True)
class AutoscaledCount:
    """What a pass of a preset in demand mode wants, and what its status says."""

    wanted: DesiredCount
    decision: AutoscaleDecision
    status: AutoscaleStatus


def autoscaled_count(
    prebuilds: Prebuilds,
    autoscale: Autoscale,
    demand: Demand | None,
    previous: PresetStatus,
    hold: Hold,
    now: datetime,
) -> AutoscaledCount:
    """Demand mode's count for one pass: schedules give the floor while they
    match (their problems are reported as without autoscale), the decision
    the rest. `previous` is the status as last written: its desired is the
    count demand mode chose last, if it decided it."""
    schedules = [Schedule(s.cron, s.instances) for s in prebuilds.schedules]
    by_schedule = desired_instances(prebuilds.instances, schedules, prebuilds.timezone, now)
    floor = by_schedule.instances if by_schedule.schedule_index is not None else None
    config = AutoscaleConfig(
        min=autoscale.min,
        max=autoscale.max,
        target_miss_ratio=autoscale.target_miss_ratio,
        window=autoscale.window,
        scale_down_delay=autoscale.scale_down_delay,
        schedule_floor=floor,
    )
    last = previous.desired if previous.autoscale is not None else None
    decision = decide_autoscale(config, demand, last, hold, now)
    wanted = DesiredCount(
        decision.desired,
        by_schedule.schedule_index,
        by_schedule.problem,
        by_schedule.problem_reason,
    )
    status = AutoscaleStatus(
        decided_by="Schedule" if decision.reason is AutoscaleReason.SCHEDULE_FLOOR else "Autoscale",
        reason=str(decision.reason),
        message=decision.message,
        recommended=decision.recommended,
        arrivals_per_minute=decision.arrivals_per_minute,
        build_seconds_p50=_rounded(demand.build_p50_s if demand else None),
        build_seconds_p90=_rounded(demand.build_p90_s if demand else None),
        slot_seconds_p90=_rounded(demand.slot_p90_s if demand else None),
        predicted_miss_ratio=decision.predicted_miss_ratio,
        window_misses=demand.misses if demand else None,
        window_claims=demand.arrivals if demand else None,
        observed_at=demand.read_at if demand else None,
    )
    return AutoscaledCount(wanted, decision, status)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 2)
