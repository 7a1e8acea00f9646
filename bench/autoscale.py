"""Demand mode against fixed pools: one claim workload, replayed on every pool at once.

Compressed time (60x): a build takes 3 s (kwok's sim.prewarm.dev/ready-delay-ms,
plus the operator's own latency) where a real one takes minutes; the workload
is a quiet spell, a morning burst and a quiet spell, Poisson arrivals whose
rate changes piecewise (ramps included). Demand mode runs with a window of
30 s, a scaleDownDelay of 30 s and the operator reading the ledger every 1 s
(PREWARM_AUTOSCALE_READ_INTERVAL): half an hour, half an hour and one minute
at 60x. Nothing else is compressed: the API server, kwok and the operator
work in real time.

Several workloads (seeds) run at once, each on its own set of pools (several
fixed sizes and one in demand mode), all presets of one operator in one
namespace; every arrival of a seed creates one claim on each of that seed's
pools at the same instant: the pools of a seed see the very same workload, so
their numbers compare pair-wise, and the seeds together give a few hundred
claims per pool kind instead of one workload's hundred (one workload's misses
move by several between runs). A claim misses when it is Bound to a cold
build (status.source). Warm workspace-seconds: unclaimed PrebuiltWorkspaces
(any phase: their pods hold resources), sampled every 0.5 s, summed over the
run.

Then the same decision (planning/autoscale.py, the operator's own code)
replayed against a model of the pool over many more seeds (bench/autoscale_model.py):
what one run cannot show, the expected miss ratio and warm time of each
setting, in seconds of CPU.

Then the demand query alone, at 100 presets: a ledger with 100 presets x
5,000 claims and 1,000 builds each, one DEMAND query per preset (what a
minute of demand mode costs at 100 presets), timed from the client.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import Watch, apply, delete_namespace, loadavg, start_operator
from bench.env import BenchEnv, percentile
from prewarm.api.constants import LABEL_PRESET, PLURAL_PRESETS, PLURAL_WORKSPACE_CLAIMS
from prewarm.commands.claim import claim_manifest
from prewarm.k8s.client import Kube

DOCS = Path(__file__).resolve().parents[1] / "docs"
PLOT = DOCS / "benchmarks-autoscale.png"
BUILD = "3s"
FIXED = [int(n) for n in os.environ.get("BENCH_AUTOSCALE_FIXED", "5,6,7").split(",")]
TARGET = 0.05
AUTOSCALE = {
    "min": 1,
    "max": 16,
    "targetMissRatio": TARGET,
    # Half an hour and a quarter of an hour at 60x. The scale-down delay is the
    # knob between warm time and misses: the model replay (bench/autoscale_model.py,
    # seeds 40-99) gives 10s, 12s and 15s as 0.028, 0.026 and 0.023 misses for
    # 33 %, 32 % and 30 % fewer warm workspace-seconds than the smallest fixed
    # pool under the target (fixed 6, 0.031). The first run on the cluster, at
    # 10s, was leaner and missed more than the model (37 % fewer, 0.034 against
    # fixed 6's 0.030): 15s, the model's setting with the most margin on misses
    # that keeps 30 %.
    "window": "30s",
    "scaleDownDelay": "15s",
}
# The demand-mode pool: the fixed pools' target.
AUTOS = {"auto": AUTOSCALE}
RAW = Path(os.environ.get("BENCH_AUTOSCALE_RAW", "/tmp/prewarm-bench-autoscale.json"))
READ_INTERVAL = "1s"
SEEDS = [int(n) for n in os.environ.get("BENCH_AUTOSCALE_SEEDS", "20,21,22,23").split(",")]
# Seeds replayed at once, groups one after another. Four at once (16 presets,
# 13 claims a second at the burst) slowed builds from 3 s to 7 s p90 on 2
# cores: every pool then missed 10-30 %, a benchmark of the machine, not of
# the pools.
AT_ONCE = int(os.environ.get("BENCH_AUTOSCALE_AT_ONCE", "2"))
# The model replay's seeds (none of them replayed on the cluster) and delays.
MODEL_SEEDS = range(40, 100)
MODEL_DELAYS = ["10s", "12s", "15s", "30s"]
# (seconds from, seconds to, claims per second at the start, at the end): linear in between.
PHASES = [
    (0, 120, 0.05, 0.05),  # quiet night
    (120, 150, 0.05, 0.8),  # people arrive
    (150, 240, 0.8, 0.8),  # the morning burst
    (240, 270, 0.8, 0.05),
    (270, 420, 0.05, 0.05),  # quiet again
]
SAMPLE_S = 0.5
COMPRESSION = (
    "How time is compressed: one second stands for one minute. A build of 3 s stands "
    "for 3 minutes; the window (30 s) for half an hour, scaleDownDelay (15 s) for a "
    "quarter of an hour; "
    "the ledger read every second for once a minute (the default); the quiet spells for "
    "2 and 2.5 hours and the burst (48 claims per minute, i.e. 48 an hour real) for "
    "1.5 hours with half-hour ramps. The API server, kwok, PostgreSQL and the operator "
    "are not compressed: their latencies (binding a claim, creating a replacement, "
    "noticing it Ready) weigh 60 times more against a build than they would in real "
    "time, which makes every pool here miss more than it would at real speed."
)
DEMAND_PRESETS = 100


def rate_at(t: float) -> float:
    for start, end, r0, r1 in PHASES:
        if start <= t < end:
            return r0 + (r1 - r0) * (t - start) / (end - start)
    return 0.0


def arrivals(seed: int) -> list[float]:
    """A non-homogeneous Poisson process by thinning (Lewis and Shedler)."""
    rng = random.Random(seed)
    peak = max(max(r0, r1) for _, _, r0, r1 in PHASES)
    end = PHASES[-1][1]
    t, out = 0.0, list[float]()
    while True:
        t += rng.expovariate(peak)
        if t >= end:
            return out
        if rng.random() < rate_at(t) / peak:
            out.append(t)


def _preset(name: str, prebuilds: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "prewarm.dev/v1alpha1",
        "kind": "Preset",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"annotations": {"sim.prewarm.dev/ready-delay-ms": BUILD}},
                "spec": {"containers": [{"name": "ws", "image": "busybox:1.37"}]},
            },
            "prebuilds": prebuilds,
        },
    }


def kinds() -> dict[str, dict[str, Any]]:
    """The pool kinds every seed runs: spec.prebuilds by kind."""
    out: dict[str, dict[str, Any]] = {f"fixed-{n}": {"instances": n} for n in FIXED}
    for name, autoscale in AUTOS.items():
        out[name] = {"instances": 0, "autoscale": autoscale}
    return out


def pool_name(seed: int, kind: str) -> str:
    return f"s{seed}-{kind}"


def pools(seeds: list[int]) -> dict[str, dict[str, Any]]:
    """Every preset of a replay: each seed's own pool of each kind."""
    return {pool_name(seed, kind): spec for seed in seeds for kind, spec in kinds().items()}


@dataclass
class Series:
    t: list[float] = field(default_factory=list)
    warm: dict[str, list[int]] = field(default_factory=dict)
    ready: dict[str, list[int]] = field(default_factory=dict)
    desired: dict[str, list[int]] = field(default_factory=dict)
    arrivals_per_minute: list[float | None] = field(default_factory=list)
    build_p90: list[float | None] = field(default_factory=list)
    slot_p90: list[float | None] = field(default_factory=list)


def _ws_keep(obj: dict[str, Any]) -> tuple[str, bool, bool]:
    meta = obj["metadata"]
    unclaimed = not (obj.get("spec") or {}).get("owner") and not meta.get("deletionTimestamp")
    ready = (obj.get("status") or {}).get("phase") == "Ready"
    return (meta.get("labels") or {}).get(LABEL_PRESET, ""), unclaimed, ready


def _claim_keep(obj: dict[str, Any]) -> tuple[str, str]:
    status = obj.get("status") or {}
    preset = (obj["spec"].get("presetRef") or {}).get("name") or ""
    return str(preset), str(status.get("source") or "")


def _preset_keep(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj.get("status") or {})


async def _sample(
    names: list[str], ws: Watch, presets: Watch, series: Series, started: float, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        series.t.append(time.perf_counter() - started)
        for name in names:
            mine = [v for v in ws.objects.values() if v[0] == name and v[1]]
            series.warm.setdefault(name, []).append(len(mine))
            series.ready.setdefault(name, []).append(sum(1 for v in mine if v[2]))
            status = presets.objects.get(name) or {}
            series.desired.setdefault(name, []).append(int(status.get("desired") or 0))
        auto = (presets.objects.get(pool_name(SEEDS[0], "auto")) or {}).get("autoscale") or {}
        series.arrivals_per_minute.append(auto.get("arrivalsPerMinute"))
        series.build_p90.append(auto.get("buildSecondsP90"))
        series.slot_p90.append(auto.get("slotSecondsP90"))
        await asyncio.sleep(SAMPLE_S)


async def _until(check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"not done after {timeout_s} s")


async def _replay(env: BenchEnv, ns: str, seeds: list[int]) -> dict[str, Any]:
    """The seeds' workloads at once, each on its own pools."""
    names = list(pools(seeds))
    kube = await Kube.connect(os.environ.get("KUBECONFIG"))
    ws = Watch(kube, ns, "prebuiltworkspaces", keep=_ws_keep).start()
    presets = Watch(kube, ns, PLURAL_PRESETS, keep=_preset_keep).start()
    bound_at: dict[str, tuple[float, str, str]] = {}  # claim -> (when, preset, source)
    clock = {"started": time.perf_counter()}

    def bound(name: str, value: tuple[str, str]) -> None:
        if value[1] and name not in bound_at:
            bound_at[name] = (time.perf_counter() - clock["started"], value[0], value[1])

    claims = Watch(kube, ns, PLURAL_WORKSPACE_CLAIMS, keep=_claim_keep, notify=bound).start()
    try:
        manifests = [_preset(name, prebuilds) for name, prebuilds in pools(seeds).items()]
        await asyncio.to_thread(apply, env, ns, manifests)

        def warmed() -> bool:
            status = {name: presets.objects.get(name) or {} for name in names}
            full = all(
                status[pool_name(seed, f"fixed-{n}")].get("ready") == n
                for seed in seeds
                for n in FIXED
            )
            autos = [
                status[pool_name(seed, kind)].get("autoscale") or {}
                for seed in seeds
                for kind in AUTOS
            ]
            return full and all(a.get("reason") == "AtMin" for a in autos)

        await _until(warmed, 180)
        times = {seed: arrivals(seed) for seed in seeds}
        series = Series()
        stop = asyncio.Event()
        started = clock["started"] = time.perf_counter()
        sampler = asyncio.create_task(_sample(names, ws, presets, series, started, stop))
        sem = asyncio.Semaphore(32)

        async def claim(i: int, at: float, name: str) -> None:
            await asyncio.sleep(max(0.0, at - (time.perf_counter() - started)))
            async with sem:
                await kube.create_claim(ns, claim_manifest(f"{name}-{i:04d}", name, f"u{i}"))

        await asyncio.gather(
            *(
                claim(i, at, pool_name(seed, kind))
                for seed in seeds
                for i, at in enumerate(times[seed])
                for kind in kinds()
            )
        )
        total = sum(len(t) for t in times.values()) * len(kinds())
        await _until(lambda: sum(1 for c in claims.objects.values() if c[1]) >= total, 300)
        await asyncio.sleep(max(0.0, PHASES[-1][1] - (time.perf_counter() - started)))
        stop.set()
        await sampler
    finally:
        for watch in (ws, presets, claims):
            await watch.stop()
        await kube.close()
    per_pool: dict[str, dict[str, float]] = {}
    for name in names:
        sources = [c[1] for c in claims.objects.values() if c[0] == name]
        warm_s = sum(series.warm[name]) * SAMPLE_S
        per_pool[name] = {
            "claims": len(sources),
            "misses": sum(1 for s in sources if s == "cold"),
            "miss_ratio": sum(1 for s in sources if s == "cold") / max(1, len(sources)),
            "warm_s": warm_s,
        }
    return {
        "series": series,
        "pools": per_pool,
        "arrivals": times[seeds[0]],  # the plotted seed's
        "load_after": loadavg(),
        "bound": bound_at,
    }


NO_PLOT = (
    "(matplotlib was not installed: `uv sync` the dev group, then "
    "`PYTHONPATH=operator:. .venv/bin/python -m bench.autoscale` draws the plot from "
    "the run's raw data)"
)


def _plot(result: dict[str, Any], best: str) -> str:
    """The first seed's pools over time: the reference fixed kind `best` and
    demand mode."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return NO_PLOT
    series: Series = result["series"]
    seed = SEEDS[0]
    fig, (top, bottom, misses) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    t = series.t
    ref = pool_name(seed, best)
    top.step(t, series.warm[ref], where="post", label=f"{best}: warm (unclaimed)", color="grey")
    for kind in AUTOS:
        target = AUTOS[kind]["targetMissRatio"]
        name = pool_name(seed, kind)
        top.step(t, series.warm[name], where="post", label=f"{kind} ({target:g}): warm (unclaimed)")
        top.step(t, series.ready[name], where="post", label=f"{kind}: Ready", alpha=0.5)
    top.set_ylabel("workspaces")
    top.legend(loc="upper left", fontsize=8)
    top.set_title(
        f"Seed {seed}: smallest fixed pool under {TARGET:.0%} misses (all seeds) vs demand"
    )
    rate = [rate_at(x) * 60 for x in t]
    seen = [v if v is not None else float("nan") for v in series.arrivals_per_minute]
    bottom.plot(t, rate, label="true arrival rate (claims/min)", color="black")
    bottom.plot(t, seen, label="demand mode's estimate (claims/min)")
    bottom.set_ylabel("claims per minute")
    bottom.set_xlabel("seconds (compressed time, 60x)")
    for at in result["arrivals"]:
        bottom.axvline(at, ymin=0, ymax=0.03, color="grey", lw=0.5)
    bottom.legend(loc="upper left", fontsize=8)
    for name, label in ((ref, best), *((pool_name(seed, k), k) for k in AUTOS)):
        when = sorted(at for at, preset, source in result["bound"].values() if preset == name)
        cold = sorted(
            at
            for at, preset, source in result["bound"].values()
            if preset == name and source == "cold"
        )
        ratio = [sum(1 for c in cold if c <= x) / max(1, sum(1 for w in when if w <= x)) for x in t]
        misses.plot(t, ratio, label=f"{label}: misses / claims so far")
    misses.axhline(TARGET, color="red", ls=":", label=f"target {TARGET:g}")
    misses.set_ylabel("miss ratio (cumulative)")
    misses.set_xlabel("seconds (compressed time, 60x)")
    misses.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=90)
    plt.close(fig)
    return f"![warm pool over time]({PLOT.name})"


# --- the demand query at 100 presets --------------------------------------------------

_FILL = [
    """INSERT INTO presets (uid, namespace, name, template_hash, generation)
    SELECT 'p' || i, 'bench', 'preset-' || i, 'h' || i, 1
    FROM generate_series(1, %(presets)s) i""",
    # A claim every 30 s per preset, going back 5,000 x 30 s (about 42 hours).
    """INSERT INTO claims (claim_uid, preset_uid, namespace, claim_name, owner, source,
                        requested_at, bound_at)
    SELECT 'c' || p || '-' || j, 'p' || p, 'bench', 'c' || j, 'u',
           CASE WHEN j %% 20 = 0 THEN 'cold' ELSE 'prebuilt' END,
           %(now)s - (j * interval '30 seconds'), %(now)s - (j * interval '30 seconds')
    FROM generate_series(1, %(presets)s) p, generate_series(1, %(claims)s) j""",
    """INSERT INTO builds (workspace_uid, preset_uid, workspace_name, template_hash,
                        started_at, ready_at)
    SELECT 'w' || p || '-' || j, 'p' || p, 'w' || j, 'h' || p,
           %(now)s - (j * interval '2 minutes'),
           %(now)s - (j * interval '2 minutes') + (30 + j %% 60) * interval '1 second'
    FROM generate_series(1, %(presets)s) p, generate_series(1, %(builds)s) j""",
    "ANALYZE presets",
    "ANALYZE claims",
    "ANALYZE builds",
]


async def _demand_queries(dsn: str, now: datetime) -> tuple[list[float], str]:
    from prewarm.ledger.repository import Ledger

    ledger = await Ledger.connect(dsn, max_size=2)
    async with ledger:
        for i in range(1, DEMAND_PRESETS + 1):  # warm the connection and caches once
            await ledger.demand(f"p{i}", f"h{i}", window=timedelta(minutes=15), now=now)
        took: list[float] = []
        for i in range(1, DEMAND_PRESETS + 1):
            t0 = time.perf_counter()
            await ledger.demand(f"p{i}", f"h{i}", window=timedelta(minutes=15), now=now)
            took.append(time.perf_counter() - t0)
    return took, ""


def _demand_at_100(env: BenchEnv) -> dict[str, Any]:
    import psycopg

    from prewarm.ledger import queries
    from prewarm.ledger.migrate import migrate

    db = "bench_demand_query"
    env.pg.create_database(db)
    dsn = env.pg.dsn(db)
    migrate(dsn)
    now = datetime.now(UTC)
    claims, builds = 5000, 1000
    with psycopg.connect(dsn, autocommit=True) as conn:
        fill = {"presets": DEMAND_PRESETS, "claims": claims, "builds": builds, "now": now}
        for statement in _FILL:
            conn.execute(statement, fill if "%(" in statement else None)
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM claims), (SELECT count(*) FROM builds)"
        ).fetchone()
        params = {
            "preset_uid": "p50",
            "template_hash": "h50",
            "since": now - timedelta(minutes=15),
            "recent_since": now - timedelta(minutes=15) / 4,
            "now": now,
            "builds": 50,
        }
        plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + queries.DEMAND, params).fetchall()
    took, _ = asyncio.run(_demand_queries(dsn, now))
    assert counts is not None
    return {
        "claims": counts[0],
        "builds": counts[1],
        "took": took,
        "plan": "\n".join(row[0] for row in plan),
    }


def _cold_at(bound: dict[str, tuple[float, str, str]], pool: str) -> str:
    at = sorted(round(t) for t, name, source in bound.values() if name == pool and source == "cold")
    return ", ".join(map(str, at)) or "none"


def _span(values: list[float | None]) -> str:
    seen = [v for v in values if v is not None]
    return f"{min(seen):g} to {max(seen):g}" if seen else "-"


def _by_kind(pools_: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Each kind's claims, misses and warm time summed over the seeds."""
    out: dict[str, dict[str, float]] = {}
    for kind in kinds():
        mine = [pools_[pool_name(seed, kind)] for seed in SEEDS]
        claims, misses = sum(p["claims"] for p in mine), sum(p["misses"] for p in mine)
        out[kind] = {
            "claims": claims,
            "misses": misses,
            "miss_ratio": misses / max(1, claims),
            "warm_s": sum(p["warm_s"] for p in mine),
        }
    return out


def _reference(by_kind: dict[str, dict[str, float]]) -> str:
    """The smallest fixed kind whose miss ratio is at most the target (the largest if none)."""
    under = [f"fixed-{n}" for n in FIXED if by_kind[f"fixed-{n}"]["miss_ratio"] <= TARGET]
    return under[0] if under else f"fixed-{FIXED[-1]}"


def _verdict(auto: dict[str, float], ref: dict[str, float]) -> tuple[float, bool]:
    saved = 1 - auto["warm_s"] / ref["warm_s"] if ref["warm_s"] else 0.0
    return saved, auto["miss_ratio"] <= ref["miss_ratio"] and saved >= 0.30


def _kind_label(kind: str, best: str, under: bool) -> str:
    if kind in AUTOS:
        return f"demand mode `{kind}`, targetMissRatio {AUTOS[kind]['targetMissRatio']:g}"
    mark = ""
    if kind == best:
        mark = " (smallest fixed under target)" if under else " (none under target: the largest)"
    return f"fixed {kind.removeprefix('fixed-')}{mark}"


def _tables(pools_: dict[str, dict[str, float]]) -> tuple[str, list[str]]:
    """(the reference kind, the report's tables and verdicts)."""
    by_kind = _by_kind(pools_)
    best = _reference(by_kind)
    under = by_kind[best]["miss_ratio"] <= TARGET
    rows = [
        f"All {len(SEEDS)} seeds together:",
        "",
        "| pool | claims | misses | miss ratio | warm workspace-seconds |",
        "|---|---|---|---|---|",
    ]
    for kind, p in by_kind.items():
        rows.append(
            f"| {_kind_label(kind, best, under)} | {p['claims']:.0f} | {p['misses']:.0f} | "
            f"{p['miss_ratio']:.3f} | {p['warm_s']:.0f} |"
        )
    rows += ["", "Each seed (misses / claims, warm workspace-seconds):", ""]
    rows += ["| seed | " + " | ".join(kinds()) + " |", "|---|" + "---|" * len(kinds())]
    for seed in SEEDS:
        cells = [pools_[pool_name(seed, kind)] for kind in kinds()]
        rows.append(
            f"| {seed} | "
            + " | ".join(f"{c['misses']:.0f} / {c['claims']:.0f}, {c['warm_s']:.0f}" for c in cells)
            + " |"
        )
    rows.append("")
    for kind in AUTOS:
        saved, ok = _verdict(by_kind[kind], by_kind[best])
        rows.append(
            f"- `{kind}` against {best}, all seeds: **{saved:.0%} fewer warm workspace-seconds**, "
            f"miss ratio {by_kind[kind]['miss_ratio']:.3f} vs {by_kind[best]['miss_ratio']:.3f}: "
            f"{'meets' if ok else 'misses'} the goal (same or lower miss ratio with at least "
            "30 % fewer warm workspace-seconds)."
        )
    return best, rows


def _model_section() -> list[str]:
    """The decision replayed on the pool model over MODEL_SEEDS (bench/autoscale_model.py)."""
    from bench.autoscale_model import Outcome, config_of, replay

    end = PHASES[-1][1]
    settings = {f"fixed-{n}": None for n in FIXED} | {
        f"demand, scaleDownDelay {d}": {**AUTOSCALE, "scaleDownDelay": d} for d in MODEL_DELAYS
    }
    totals = {name: Outcome(0, 0, 0.0) for name in settings}
    fixed_config = config_of(AUTOSCALE)
    for seed in MODEL_SEEDS:
        times = arrivals(seed)
        for name, spec in settings.items():
            fixed = int(name.removeprefix("fixed-")) if spec is None else None
            config = fixed_config if spec is None else config_of(spec)
            totals[name] += replay(times, end, fixed, config)
    ratios = {name: o.misses / max(1, o.claims) for name, o in totals.items()}
    under = [f"fixed-{n}" for n in FIXED if ratios[f"fixed-{n}"] <= TARGET]
    ref = under[0] if under else f"fixed-{FIXED[-1]}"
    rows = [
        f"The same decision replayed on a model of the pool (`bench/autoscale_model.py`: "
        f"builds of exactly 3 s, the operator reacting in 0.35 s, no API latency) over "
        f"{len(MODEL_SEEDS)} seeds ({MODEL_SEEDS[0]}-{MODEL_SEEDS[-1]}) of the same workload: "
        "the expected numbers one run cannot give, and how the scale-down delay trades warm "
        "time for misses.",
        "",
        "| setting | claims | misses | miss ratio | warm workspace-seconds | vs " + ref + " |",
        "|---|---|---|---|---|---|",
    ]
    for name, o in totals.items():
        change = o.warm_s / totals[ref].warm_s - 1
        rows.append(
            f"| {name} | {o.claims} | {o.misses} | {ratios[name]:.3f} | {o.warm_s:.0f} | "
            f"{change:+.0%} |"
        )
    return rows


def _replay_all(env: BenchEnv) -> tuple[dict[str, Any], list[str]]:
    """Every seed, AT_ONCE at a time, each group with a fresh operator in a
    fresh namespace: (the first group's result with every pool's numbers and
    claims, a line per group)."""
    groups = [SEEDS[i : i + AT_ONCE] for i in range(0, len(SEEDS), AT_ONCE)]
    first: dict[str, Any] = {}
    lines = []
    for i, group in enumerate(groups):
        ns = env.namespace(f"bench-autoscale-{i}")
        before = loadavg()
        op = start_operator(env, ns, PREWARM_AUTOSCALE_READ_INTERVAL=READ_INTERVAL)
        try:
            result = asyncio.run(_replay(env, ns, group))
        finally:
            op.stop()
        delete_namespace(env, ns)
        lines.append(
            f"seeds {', '.join(map(str, group))}: load average {before} before, "
            f"{result['load_after']} after"
        )
        if not first:
            first = result
        else:
            first["pools"].update(result["pools"])
            first["bound"].update(result["bound"])
    return first, lines


def run(env: BenchEnv) -> tuple[str, str]:
    result, groups = _replay_all(env)
    raw = {k: v for k, v in result.items() if k != "series"}
    raw["bound"] = {k: list(v) for k, v in result["bound"].items()}
    raw["series"] = result["series"].__dict__
    best, rows = _tables(result["pools"])
    raw["best"] = best
    RAW.write_text(json.dumps(raw))
    q = _demand_at_100(env)
    took_ms = [s * 1000 for s in q["took"]]
    plan_lines = [line for line in q["plan"].splitlines() if "Index" in line or "Execution" in line]
    claims = sum(len(arrivals(seed)) for seed in SEEDS)
    body = [
        f"{len(SEEDS)} workloads (seeds {', '.join(map(str, SEEDS))}; {claims} Poisson "
        f"arrivals in all) over {PHASES[-1][1]} s each, at once (compressed 60x: quiet at "
        f"{PHASES[0][2] * 60:g}/min, a morning burst at {PHASES[2][2] * 60:g}/min, quiet), "
        f"{AT_ONCE} at a time, each replayed on its own pools (one claim per pool of the "
        "seed per arrival), each group with a fresh operator; "
        f"builds take {BUILD} (kwok). Demand mode: {json.dumps(AUTOSCALE)}, "
        f"PREWARM_AUTOSCALE_READ_INTERVAL={READ_INTERVAL}. Fixed sizes: "
        f"{', '.join(map(str, FIXED))}; the smallest whose miss ratio over all seeds is at "
        f"most {TARGET} is the reference.",
        "",
        COMPRESSION,
        "",
        "Runs: " + "; ".join(groups) + ".",
        "",
        *rows,
        "",
        f"When the misses fell in seed {SEEDS[0]} (seconds into the run): "
        + "; ".join(
            f"{kind} {_cold_at(result['bound'], pool_name(SEEDS[0], kind))}"
            for kind in (best, *AUTOS)
        )
        + ".",
        "",
        f"Build time p90 as demand mode saw it in seed {SEEDS[0]} (create to Ready, latest "
        f"50 builds): {_span(result['series'].build_p90)} s over the run; how long a taken "
        "slot stayed empty, p90 (claim bound to replacement Ready, latest 50 warm claims): "
        f"{_span(result['series'].slot_p90)} s.",
        "",
        _plot(result, best),
        "",
        *_model_section(),
        "",
        f"The demand query (`ledger/queries.py` DEMAND) at {DEMAND_PRESETS} presets: "
        f"{q['claims']:,} claims and {q['builds']:,} builds in the ledger, one query "
        f"per preset (a minute of demand mode at {DEMAND_PRESETS} presets), timed from "
        f"the client: p50 **{percentile(took_ms, 0.5):.2f} ms**, p99 "
        f"{percentile(took_ms, 0.99):.2f} ms, all {DEMAND_PRESETS} in "
        f"{sum(took_ms):.0f} ms. Its plan (EXPLAIN ANALYZE, one preset):",
        "",
        "```",
        *plan_lines,
        "```",
    ]
    return "Demand mode (autoscale) vs fixed pools", "\n".join(body)


def replot() -> None:
    """Draw the plot of the last run from its raw data (RAW) and put it in place
    of the note in docs/benchmarks.md (a run without matplotlib)."""
    raw = json.loads(RAW.read_text())
    raw["series"] = Series(**raw["series"])
    raw["bound"] = {k: tuple(v) for k, v in raw["bound"].items()}
    best = raw["best"]
    image = _plot(raw, best)
    doc = DOCS / "benchmarks.md"
    doc.write_text(doc.read_text().replace(NO_PLOT, image))
    print(image)


if __name__ == "__main__":
    replot()
