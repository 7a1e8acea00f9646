"""Demand mode against fixed pools: one claim workload, replayed on every pool at once.

Compressed time (60x): a build takes 3 s (kwok's sim.prewarm.dev/ready-delay-ms,
plus the operator's own latency) where a real one takes minutes; the workload
is a quiet spell, a morning burst and a quiet spell, Poisson arrivals whose
rate changes piecewise (ramps included). Demand mode runs with a window of
30 s, a scaleDownDelay of 30 s and the operator reading the ledger every 1 s
(PREWARM_AUTOSCALE_READ_INTERVAL): half an hour, half an hour and one minute
at 60x. Nothing else is compressed: the API server, kwok and the operator
work in real time.

All pools (several fixed sizes and one in demand mode) are presets of one
operator in one namespace, and every arrival creates one claim on each of
them at the same instant: the pools see the very same workload, so their
numbers compare pair-wise. A claim misses when it is Bound to a cold build
(status.source). Warm workspace-seconds: unclaimed PrebuiltWorkspaces (any
phase: their pods hold resources), sampled every 0.5 s, summed over the run.

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

from bench.common import Watch, apply, delete_namespace, start_operator
from bench.env import BenchEnv, percentile
from prewarm.api.constants import LABEL_PRESET, PLURAL_PRESETS, PLURAL_WORKSPACE_CLAIMS
from prewarm.commands.claim import claim_manifest
from prewarm.k8s.client import Kube

DOCS = Path(__file__).resolve().parents[1] / "docs"
PLOT = DOCS / "benchmarks-autoscale.png"
BUILD = "3s"
FIXED = [int(n) for n in os.environ.get("BENCH_AUTOSCALE_FIXED", "6,8,10").split(",")]
TARGET = 0.05
AUTOSCALE = {
    "min": 1,
    "max": 16,
    "targetMissRatio": TARGET,
    # Half an hour each at 60x. The defaults (15m, 5m), i.e. 15 s and 5 s here,
    # missed more in an earlier run (0.133 vs 0.094): bursts within the burst.
    "window": "30s",
    "scaleDownDelay": "30s",
}
# Demand-mode pools: the fixed pools' target, and a stricter one (the knob a
# platform team turns when the default misses more than a fixed pool would).
AUTOS = {
    "auto": AUTOSCALE,
    "auto-strict": {**AUTOSCALE, "targetMissRatio": 0.01},
}
RAW = Path(os.environ.get("BENCH_AUTOSCALE_RAW", "/tmp/prewarm-bench-autoscale.json"))
READ_INTERVAL = "1s"
SEED = int(os.environ.get("BENCH_AUTOSCALE_SEED", "20"))
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
    "for 3 minutes; the window (30 s) and scaleDownDelay (30 s) for half an hour each; "
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
    t, out = 0.0, []
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


def pools() -> dict[str, dict[str, Any]]:
    out = {f"fixed-{n}": {"instances": n} for n in FIXED}
    for name, autoscale in AUTOS.items():
        out[name] = {"instances": 0, "autoscale": autoscale}
    return out


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
        auto = (presets.objects.get("auto") or {}).get("autoscale") or {}
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


async def _replay(env: BenchEnv, ns: str) -> dict[str, Any]:
    names = list(pools())
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
        manifests = [_preset(name, prebuilds) for name, prebuilds in pools().items()]
        await asyncio.to_thread(apply, env, ns, manifests)

        def warmed() -> bool:
            full = all((presets.objects.get(f"fixed-{n}") or {}).get("ready") == n for n in FIXED)
            autos = [(presets.objects.get(n) or {}).get("autoscale") or {} for n in AUTOS]
            return full and all(a.get("reason") == "AtMin" for a in autos)

        await _until(warmed, 180)
        times = arrivals(SEED)
        series = Series()
        stop = asyncio.Event()
        started = clock["started"] = time.perf_counter()
        sampler = asyncio.create_task(_sample(names, ws, presets, series, started, stop))
        sem = asyncio.Semaphore(32)

        async def claim(i: int, at: float, name: str) -> None:
            await asyncio.sleep(max(0.0, at - (time.perf_counter() - started)))
            async with sem:
                await kube.create_claim(ns, claim_manifest(f"{name}-{i:04d}", name, f"u{i}"))

        await asyncio.gather(*(claim(i, at, name) for i, at in enumerate(times) for name in names))
        total = len(times) * len(names)
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
    return {"series": series, "pools": per_pool, "arrivals": times, "bound": bound_at}


NO_PLOT = (
    "(matplotlib was not installed: `uv sync` the dev group, then "
    "`PYTHONPATH=operator:. .venv/bin/python -m bench.autoscale` draws the plot from "
    "the run's raw data)"
)


def _plot(result: dict[str, Any], best: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return NO_PLOT
    series: Series = result["series"]
    fig, (top, bottom, misses) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    t = series.t
    top.step(t, series.warm[best], where="post", label=f"{best}: warm (unclaimed)", color="grey")
    for name in AUTOS:
        target = AUTOS[name]["targetMissRatio"]
        top.step(t, series.warm[name], where="post", label=f"{name} ({target:g}): warm (unclaimed)")
    top.step(t, series.ready["auto"], where="post", label="auto: Ready", alpha=0.5)
    top.set_ylabel("workspaces")
    top.legend(loc="upper left", fontsize=8)
    top.set_title(f"Warm pool over time: smallest fixed pool under {TARGET:.0%} misses vs demand")
    rate = [rate_at(x) * 60 for x in t]
    seen = [v if v is not None else float("nan") for v in series.arrivals_per_minute]
    bottom.plot(t, rate, label="true arrival rate (claims/min)", color="black")
    bottom.plot(t, seen, label="demand mode's estimate (claims/min)")
    bottom.set_ylabel("claims per minute")
    bottom.set_xlabel("seconds (compressed time, 60x)")
    for at in result["arrivals"]:
        bottom.axvline(at, ymin=0, ymax=0.03, color="grey", lw=0.5)
    bottom.legend(loc="upper left", fontsize=8)
    for name, label in ((best, best), *((n, n) for n in AUTOS)):
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


def run(env: BenchEnv) -> tuple[str, str]:
    ns = env.namespace("bench-autoscale")
    op = start_operator(env, ns, PREWARM_AUTOSCALE_READ_INTERVAL=READ_INTERVAL)
    try:
        result = asyncio.run(_replay(env, ns))
    finally:
        op.stop()
    delete_namespace(env, ns)
    raw = {k: v for k, v in result.items() if k != "series"}
    raw["bound"] = {k: list(v) for k, v in result["bound"].items()}
    raw["series"] = result["series"].__dict__
    pools_ = result["pools"]
    under = [f"fixed-{n}" for n in FIXED if pools_[f"fixed-{n}"]["miss_ratio"] <= TARGET]
    best = under[0] if under else f"fixed-{FIXED[-1]}"
    raw["best"] = best
    RAW.write_text(json.dumps(raw))
    q = _demand_at_100(env)
    took_ms = [s * 1000 for s in q["took"]]
    rows = [
        "| pool | claims | misses | miss ratio | warm workspace-seconds |",
        "|---|---|---|---|---|",
    ]
    for name, p in pools_.items():
        mark = " (smallest fixed under target)" if name == best else ""
        label = (
            f"demand mode `{name}`, targetMissRatio {AUTOS[name]['targetMissRatio']:g}"
            if name in AUTOS
            else f"fixed {name.removeprefix('fixed-')}{mark}"
        )
        rows.append(
            f"| {label} | {p['claims']} | {p['misses']} | {p['miss_ratio']:.3f} | "
            f"{p['warm_s']:.0f} |"
        )
    verdicts = []
    for name in AUTOS:
        auto = pools_[name]
        saved = 1 - auto["warm_s"] / pools_[best]["warm_s"] if pools_[best]["warm_s"] else 0.0
        ok = auto["miss_ratio"] <= pools_[best]["miss_ratio"] and saved >= 0.30
        verdicts.append(
            f"- `{name}` against {best}: **{saved:.0%} fewer warm workspace-seconds**, miss "
            f"ratio {auto['miss_ratio']:.3f} vs {pools_[best]['miss_ratio']:.3f}: "
            f"{'meets' if ok else 'misses'} the goal (same or lower miss ratio with at least "
            "30 % fewer warm workspace-seconds)."
        )
    plan_lines = [line for line in q["plan"].splitlines() if "Index" in line or "Execution" in line]
    body = [
        f"One workload of {len(result['arrivals'])} Poisson arrivals over "
        f"{PHASES[-1][1]} s (compressed 60x: quiet at {PHASES[0][2] * 60:g}/min, a "
        f"morning burst at {PHASES[2][2] * 60:g}/min, quiet), seed {SEED}, replayed on "
        f"each pool at once (one claim per pool per arrival); builds take {BUILD} "
        f"(kwok). Demand mode: {json.dumps(AUTOSCALE)} (and `auto-strict` the same with "
        f"targetMissRatio 0.01), "
        f"PREWARM_AUTOSCALE_READ_INTERVAL={READ_INTERVAL}. Fixed sizes tried: "
        f"{', '.join(map(str, FIXED))} (a few sizes rather than a search; the smallest "
        f"whose miss ratio is at most {TARGET} is the reference).",
        "",
        COMPRESSION,
        "",
        *rows,
        "",
        *verdicts,
        "",
        "When the misses fell (seconds into the run): "
        + "; ".join(f"{name} {_cold_at(result['bound'], name)}" for name in (best, *AUTOS))
        + ".",
        "",
        f"Build time p90 as demand mode saw it (create to Ready, latest 50 builds): "
        f"{_span(result['series'].build_p90)} s over the run; how long a taken slot "
        f"stayed empty, p90 (claim bound to replacement Ready, latest 50 warm claims): "
        f"{_span(result['series'].slot_p90)} s.",
        "",
        _plot(result, best),
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
