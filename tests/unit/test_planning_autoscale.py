"""Demand mode's decision (planning/autoscale.py): the model and its hysteresis."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from prewarm.api.preset import AutoscaleStatus, Prebuilds, PresetStatus
from prewarm.planning.autoscale import (
    AutoscaleConfig,
    AutoscaleReason,
    Demand,
    Hold,
    autoscaled_count,
    decide_autoscale,
    demand_wakeup,
    erlang_b,
    holding_time,
    smallest_pool,
)

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)
DELAY = timedelta(minutes=5)


def config(
    lo: int = 0, hi: int = 50, target: float = 0.05, floor: int | None = None
) -> AutoscaleConfig:
    return AutoscaleConfig(lo, hi, target, WINDOW, DELAY, schedule_floor=floor)


def demand(
    arrivals: int, p90: float | None = 30.0, recent: int | None = None, slot: float | None = None
) -> Demand:
    return Demand(
        arrivals=arrivals,
        arrivals_recent=arrivals // 4 if recent is None else recent,
        misses=0,
        build_samples=0 if p90 is None else 20,
        build_p50_s=None if p90 is None else p90 / 2,
        build_p90_s=p90,
        read_at=NOW,
        slot_samples=0 if slot is None else 20,
        slot_p90_s=slot,
    )


def decide(
    cfg: AutoscaleConfig,
    d: Demand | None,
    previous: int | None = None,
    hold: Hold | None = None,
    now: datetime = NOW,
) -> int:
    return decide_autoscale(cfg, d, previous, hold or Hold(), now).desired


# -- the model ---------------------------------------------------------------------------


def test_erlang_b_known_values() -> None:
    # Textbook values: B(1, 1) = 1/2; B(2, 1) = 1/5; B(5, 2) ~ 0.0367.
    assert erlang_b(1, 1.0) == 0.5
    assert math.isclose(erlang_b(2, 1.0), 0.2)
    assert math.isclose(erlang_b(5, 2.0), 0.03670, abs_tol=1e-4)
    assert erlang_b(0, 3.0) == 1.0
    assert erlang_b(3, 0.0) == 0.0


def test_smallest_pool_meets_the_target_and_no_smaller_one_does() -> None:
    n = smallest_pool(4.0, 0.05, 100)
    assert erlang_b(n, 4.0) <= 0.05 < erlang_b(n - 1, 4.0)


def test_one_claim_a_minute_with_thirty_second_builds() -> None:
    # 15 claims in 15 minutes, builds of 30 s: 0.5 busy; 2 warm -> B = 0.077, 3 -> 0.013.
    result = decide_autoscale(config(), demand(15), None, Hold(), NOW)
    assert result.desired == 3
    assert result.arrivals_per_minute == 1.0
    assert result.reason is AutoscaleReason.DEMAND
    assert result.predicted_miss_ratio is not None
    assert result.predicted_miss_ratio <= 0.05


def test_no_claims_keeps_min() -> None:
    result = decide_autoscale(config(lo=2), demand(0), None, Hold(), NOW)
    assert (result.desired, result.reason) == (2, AutoscaleReason.AT_MIN)


def test_more_than_max_wants_is_capped() -> None:
    result = decide_autoscale(config(hi=4), demand(900), None, Hold(), NOW)
    assert (result.desired, result.reason) == (4, AutoscaleReason.AT_MAX)


def test_a_schedule_floor_raises_min_and_says_so() -> None:
    result = decide_autoscale(config(lo=1, hi=5, floor=8), demand(15), None, Hold(), NOW)
    assert (result.desired, result.reason) == (8, AutoscaleReason.SCHEDULE_FLOOR)


def test_a_burst_in_the_last_quarter_counts_at_its_own_rate() -> None:
    steady = decide(config(), demand(20, recent=5))
    burst = decide(config(), demand(20, recent=20))  # all 20 in the last 3.75 minutes
    assert burst > steady


def test_without_the_ledger_the_last_count_holds() -> None:
    result = decide_autoscale(config(lo=1, hi=10), None, 6, Hold(), NOW)
    assert (result.desired, result.reason) == (6, AutoscaleReason.NO_DEMAND_DATA)
    assert decide(config(lo=1, hi=10), None) == 1  # nothing chosen before: min


def test_without_a_measured_build_the_last_count_holds() -> None:
    result = decide_autoscale(config(lo=1, hi=10), demand(30, p90=None), 4, Hold(), NOW)
    assert (result.desired, result.reason) == (4, AutoscaleReason.NO_BUILD_DATA)
    assert result.arrivals_per_minute == 2.0


# -- hysteresis ---------------------------------------------------------------------------


def test_up_at_once_down_as_higher_recommendations_age_out_of_the_delay() -> None:
    """The HPA's stabilisation window: the count is the highest recommended
    during the last scaleDownDelay."""
    cfg = config()
    high = decide_autoscale(cfg, demand(150), 2, Hold(), NOW)
    assert high.desired > 2
    assert high.reason is AutoscaleReason.DEMAND
    mid = decide_autoscale(cfg, demand(60), high.desired, high.hold, NOW + DELAY / 2)
    assert 0 < mid.recommended < high.desired
    assert mid.desired == high.desired
    assert mid.reason is AutoscaleReason.HOLDING
    assert f"{mid.recommended} would do, held for scaleDownDelay" in mid.message
    low = decide_autoscale(cfg, demand(0), mid.desired, mid.hold, NOW + DELAY)
    # The high recommendation is a whole delay old: the middle one still holds.
    assert low.desired == mid.recommended
    assert low.reason is AutoscaleReason.HOLDING
    done = decide_autoscale(cfg, demand(0), low.desired, low.hold, NOW + DELAY * 3 / 2)
    assert done.desired == done.recommended == 0
    assert done.reason is AutoscaleReason.DEMAND


def test_a_restart_holds_the_count_it_finds_for_one_delay() -> None:
    """No memory (a fresh operator): the count in the status counts as
    recommended now, so the pool does not drop the moment the operator restarts."""
    cfg = config()
    first = decide_autoscale(cfg, demand(0), 8, Hold(), NOW)
    assert (first.desired, first.recommended) == (8, 0)
    later = decide_autoscale(cfg, demand(0), 8, first.hold, NOW + DELAY)
    assert later.desired == 0


def test_a_rise_during_the_delay_holds_from_the_rise() -> None:
    cfg = config()
    low = decide_autoscale(cfg, demand(0), 8, Hold(), NOW)
    up = decide_autoscale(cfg, demand(300), 8, low.hold, NOW + DELAY / 2)
    assert up.desired == up.recommended > 8
    assert up.reason is AutoscaleReason.DEMAND
    after = decide_autoscale(cfg, demand(0), up.desired, up.hold, NOW + DELAY)
    assert after.desired == up.desired  # the rise is half a delay old


def test_the_memory_keeps_only_counts_that_may_still_be_the_highest() -> None:
    cfg = config()
    hold, chosen = Hold(), 0
    for i, arrivals in enumerate([300, 30, 150, 60, 90]):
        result = decide_autoscale(cfg, demand(arrivals), chosen, hold, NOW + i * DELAY / 10)
        chosen, hold = result.desired, result.hold
    counts = [n for _, n in hold.recommended]
    assert counts == sorted(counts, reverse=True)
    assert len(counts) == len(set(counts)) == 3  # 300's, 150's, 90's


def test_a_lowered_max_caps_the_held_count_at_once() -> None:
    high = decide_autoscale(config(hi=50), demand(300), 0, Hold(), NOW)
    assert high.desired > 4
    capped = decide_autoscale(config(hi=4), demand(300), high.desired, high.hold, NOW)
    assert capped.desired == 4


def test_a_slot_stays_empty_longer_than_the_build_the_model_uses_the_slot() -> None:
    """A claim every 10 s, builds of 30 s: 3 busy, 7 warm for 5 %. If the
    operator takes 15 s to start each replacement, a taken slot stays empty
    45 s: 4.5 busy, 8 warm."""
    cfg = config()
    assert decide(cfg, demand(90, 30.0)) == 7
    assert decide(cfg, demand(90, 30.0, slot=45.0)) == 8
    result = decide_autoscale(cfg, demand(90, 30.0, slot=45.0), None, Hold(), NOW)
    assert "slot empty p90 45.0s (build p90 30.0s)" in result.message


def test_the_slot_never_counts_for_less_than_the_build() -> None:
    # Ready whole seconds can make a slot look shorter than its build.
    assert holding_time(demand(90, 30.0, slot=20.0)) == 30.0
    assert holding_time(demand(90, 30.0)) == 30.0
    assert holding_time(demand(90, None, slot=20.0)) is None


# -- properties ---------------------------------------------------------------------------

arrivals = st.integers(min_value=0, max_value=2000)
build_s = st.floats(min_value=0.1, max_value=3600, allow_nan=False)
bounds = st.tuples(st.integers(0, 30), st.integers(0, 30)).map(sorted)
targets = st.floats(min_value=0.001, max_value=0.5)


@given(bounds, targets, arrivals, arrivals, build_s)
def test_monotone_in_the_arrival_rate(
    b: list[int], target: float, a: int, extra: int, t: float
) -> None:
    cfg = config(b[0], b[1], target)
    assert decide(cfg, demand(a, t)) <= decide(cfg, demand(a + extra, t))


@given(bounds, targets, arrivals, build_s, build_s)
def test_monotone_in_the_build_time(
    b: list[int], target: float, a: int, t: float, u: float
) -> None:
    cfg = config(b[0], b[1], target)
    short, long_ = sorted((t, u))
    assert decide(cfg, demand(a, short)) <= decide(cfg, demand(a, long_))


@given(bounds, targets, arrivals, build_s, build_s, build_s)
def test_monotone_in_the_time_a_slot_stays_empty(
    b: list[int], target: float, a: int, t: float, u: float, v: float
) -> None:
    cfg = config(b[0], b[1], target)
    short, long_ = sorted((u, v))
    assert decide(cfg, demand(a, t)) <= decide(cfg, demand(a, t, slot=short))
    assert decide(cfg, demand(a, t, slot=short)) <= decide(cfg, demand(a, t, slot=long_))
    assert b[0] <= decide(cfg, demand(a, t, slot=long_)) <= b[1]


@given(bounds, targets, arrivals, build_s, st.one_of(st.none(), st.integers(0, 40)))
def test_within_min_and_max(
    b: list[int], target: float, a: int, t: float, previous: int | None
) -> None:
    cfg = config(b[0], b[1], target)
    assert b[0] <= decide(cfg, demand(a, t), previous) <= b[1]
    assert b[0] <= decide(cfg, None, previous) <= b[1]


@given(bounds, arrivals, build_s)
def test_the_predicted_miss_ratio_meets_the_target_unless_capped(
    b: list[int], a: int, t: float
) -> None:
    result = decide_autoscale(config(b[0], b[1]), demand(a, t), None, Hold(), NOW)
    assert result.predicted_miss_ratio is not None
    assert result.predicted_miss_ratio <= 0.05 or result.reason is AutoscaleReason.AT_MAX


@settings(max_examples=200)
@given(
    st.integers(10, 600),  # the underlying arrivals per window
    st.lists(st.floats(-0.3, 0.3), min_size=5, max_size=120),  # noise, one per pass
    st.integers(5, 120),  # seconds between passes
)
def test_no_flapping_under_noise(base: int, noise: list[float], step_s: int) -> None:
    """Whatever the noise, the count never falls within scaleDownDelay of a
    rise (no up-down-up every pass), and never below a count recommended
    during the last scaleDownDelay."""
    cfg = config()
    chosen, hold = None, Hold()
    history: list[tuple[datetime, int, int]] = []  # (when, chosen, recommended)
    for i, wobble in enumerate(noise):
        now = NOW + timedelta(seconds=i * step_s)
        result = decide_autoscale(cfg, demand(round(base * (1 + wobble))), chosen, hold, now)
        chosen, hold = result.desired, result.hold
        history.append((now, chosen, result.recommended))
    last_rise: datetime | None = None
    for (_, before, _), (at, after, _) in itertools.pairwise(history):
        if after < before:
            assert last_rise is None or at - last_rise >= DELAY
        if after > before:
            last_rise = at
    for at, count, _ in history:
        recent = [rec for when, _, rec in history if at - DELAY < when <= at]
        assert count == max(recent)


@given(st.integers(0, 30), st.integers(1, 600), build_s)
def test_steady_demand_settles(lo: int, a: int, t: float) -> None:
    """The same demand pass after pass: after at most one delay the count stays put."""
    cfg = config(lo, lo + 20)
    chosen, hold = None, Hold()
    seen = []
    for i in range(12):
        result = decide_autoscale(cfg, demand(a, t), chosen, hold, NOW + i * DELAY / 2)
        chosen, hold = result.desired, result.hold
        seen.append(chosen)
    assert len(set(seen[3:])) == 1


# -- with the preset's spec and status ----------------------------------------------------


def _prebuilds(**autoscale: Any) -> Prebuilds:
    return Prebuilds.model_validate(
        {
            "instances": 9,
            "schedules": [{"cron": "* 8-9 * * *", "instances": 5}],
            "autoscale": {"min": 1, "max": 4, "window": "15m", **autoscale},
        }
    )


def test_the_spec_count_is_ignored_and_a_matching_schedule_is_the_floor() -> None:
    prebuilds = _prebuilds()
    assert prebuilds.autoscale is not None
    evening = NOW.replace(hour=20)
    quiet = autoscaled_count(
        prebuilds, prebuilds.autoscale, demand(0), PresetStatus(), Hold(), evening
    )
    assert quiet.wanted.instances == 1  # min, not instances (9)
    assert (quiet.status.decided_by, quiet.status.reason) == ("Autoscale", "AtMin")
    morning = autoscaled_count(
        prebuilds, prebuilds.autoscale, demand(0), PresetStatus(), Hold(), NOW
    )
    assert morning.wanted.instances == 5  # the schedule, above max (4)
    assert morning.wanted.schedule_index == 0
    assert (morning.status.decided_by, morning.status.reason) == ("Schedule", "ScheduleFloor")


def test_the_last_count_is_the_status_desired_only_if_demand_mode_set_it() -> None:
    prebuilds = _prebuilds(max=10)
    assert prebuilds.autoscale is not None
    by_instances = PresetStatus(desired=9)
    by_autoscale = PresetStatus(
        desired=7, autoscale=AutoscaleStatus(decided_by="Autoscale", reason="Demand")
    )
    evening = NOW.replace(hour=20)
    first = autoscaled_count(prebuilds, prebuilds.autoscale, None, by_instances, Hold(), evening)
    assert first.wanted.instances == 1  # nothing chosen before: min
    again = autoscaled_count(prebuilds, prebuilds.autoscale, None, by_autoscale, Hold(), evening)
    assert again.wanted.instances == 7
    assert again.status.reason == "NoDemandData"
    assert again.status.arrivals_per_minute is None


def test_the_pass_comes_back_for_the_next_read_but_never_spins_without_the_ledger() -> None:
    assert demand_wakeup(100.0, 130.0, 60.0, answered=True) == 30.5
    assert demand_wakeup(100.0, 200.0, 60.0, answered=True) == 0.5  # overdue: at once
    # No answer (ledger down) and the last read long ago: one interval, not 0.5 s.
    assert demand_wakeup(100.0, 200.0, 60.0, answered=False) == 60.5
    assert demand_wakeup(None, 200.0, 60.0, answered=False) == 60.5
