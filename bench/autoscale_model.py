"""Demand mode's decision replayed against a model of the pool, over many seeds.

One run of the real benchmark (bench/autoscale.py) replays a few workloads:
a few hundred claims per pool, so one pool's misses move by several between
runs, and a setting that looks better in one run may not be. This replays
the operator's own decision (planning/autoscale.py: decide_autoscale, the
same function the operator calls) against a model of a pool, over many
seeds of the same workload, in seconds of CPU:

- a claim takes the oldest Ready unclaimed workspace, or misses;
- the pool is topped up to its desired count at once, and a new workspace
  is Ready REACT_S + BUILD_S later (the operator's reaction and the build;
  REACT_S is what the real run's slot time p90 shows above the build);
- a lower desired count deletes the unclaimed workspaces furthest from Ready;
- demand mode reads the demand every READ_S: arrivals in the window and its
  last quarter, the build time, the slot time (build + reaction).

What it leaves out: the API server's and the operator's latency under load
(they vary; the real run has them), and builds that vary in length. It is a
model: its numbers say which setting is better in expectation, the real run
says what the operator does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prewarm.planning.autoscale import AutoscaleConfig, Demand, Hold, decide_autoscale

BUILD_S = 3.0
REACT_S = 0.35
READ_S = 1.0
STEP_S = 0.05
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Outcome:
    claims: int
    misses: int
    warm_s: float

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(
            self.claims + other.claims, self.misses + other.misses, self.warm_s + other.warm_s
        )


def replay(
    times: Sequence[float], end_s: float, fixed: int | None, config: AutoscaleConfig
) -> Outcome:
    """One workload on one pool: `fixed` workspaces, or demand mode with `config`."""
    pool: list[float] = []  # when each unclaimed workspace is (or was) Ready
    desired = fixed if fixed is not None else config.min
    previous, hold = None, Hold()
    misses, warm, i, t, last_read = 0, 0.0, 0, 0.0, -READ_S
    while t < end_s:
        while i < len(times) and times[i] <= t:
            ready = [r for r in pool if r <= t]
            if ready:
                pool.remove(min(ready))
            else:
                misses += 1
            i += 1
        if fixed is None and t - last_read >= READ_S:
            last_read = t
            now = EPOCH + timedelta(seconds=t)
            decision = decide_autoscale(config, _demand(times[:i], t, config), previous, hold, now)
            desired, hold, previous = decision.desired, decision.hold, decision.desired
        if len(pool) < desired:
            pool += [t + REACT_S + BUILD_S] * (desired - len(pool))
        elif len(pool) > desired:
            pool = sorted(pool)[:desired]
        warm += len(pool) * STEP_S
        t += STEP_S
    return Outcome(len(times), misses, warm)


def _demand(seen: Sequence[float], t: float, config: AutoscaleConfig) -> Demand:
    window = config.window.total_seconds()
    in_window = [a for a in seen if a > t - window]
    recent = [a for a in in_window if a > t - window / 4]
    return Demand(
        arrivals=len(in_window),
        arrivals_recent=len(recent),
        misses=0,
        build_samples=50,
        build_p50_s=BUILD_S,
        build_p90_s=BUILD_S,
        read_at=EPOCH + timedelta(seconds=t),
        slot_samples=50,
        slot_p90_s=BUILD_S + REACT_S,
    )


def config_of(spec: dict[str, object]) -> AutoscaleConfig:
    """spec.prebuilds.autoscale as the benchmark writes it (durations in whole seconds)."""

    def seconds(value: object) -> timedelta:
        return timedelta(seconds=float(str(value).removesuffix("s")))

    return AutoscaleConfig(
        min=int(str(spec["min"])),
        max=int(str(spec["max"])),
        target_miss_ratio=float(str(spec["targetMissRatio"])),
        window=seconds(spec["window"]),
        scale_down_delay=seconds(spec["scaleDownDelay"]),
    )
