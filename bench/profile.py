"""Where the operator spends its CPU: py-spy samples during a convergence
(N presets x M instances from empty) and during a burst of 100 concurrent
claims against a warm pool of 100 (the burst of bench/claims.py).

py-spy records the operator process (`record -f raw --nonblocking`, 50 Hz,
active samples only: idle waits in the event loop are not sampled). Shares are
of all samples taken: "self" is time in the function itself (leaf frame),
"incl." includes what it calls.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import (
    WRITE_VERBS,
    Profiler,
    Watch,
    apply,
    apply_presets,
    by_verb_resource,
    delete_namespace,
    delta,
    inclusive,
    loadavg,
    op_metric,
    preset,
    preset_ready,
    proc_sample,
    request_table,
    requests,
    scrape,
    start_operator,
)
from bench.env import BenchEnv
from prewarm.api.constants import (
    PLURAL_PREBUILT_WORKSPACES,
    PLURAL_PRESETS,
    PLURAL_WORKSPACE_CLAIMS,
)
from prewarm.commands.claim import claim_manifest
from prewarm.k8s.client import Kube

PRESETS = int(os.environ.get("BENCH_PROFILE_PRESETS", "100"))
INSTANCES = int(os.environ.get("BENCH_PROFILE_INSTANCES", "10"))
CLAIMS = 100
# A directory to copy the raw py-spy profiles into (for a closer look afterwards).
KEEP = os.environ.get("BENCH_PROFILE_KEEP", "")


def _phase(obj: dict[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase") or "")


async def _run(env: BenchEnv, ns: str, op: Any, workdir: Path) -> dict[str, Any]:
    kube = await Kube.connect(os.environ.get("KUBECONFIG"))
    presets = Watch(kube, ns, PLURAL_PRESETS, keep=preset_ready).start()
    claims = Watch(kube, ns, PLURAL_WORKSPACE_CLAIMS, keep=_phase).start()
    # The same objects the operator watches: their events are what it processes.
    pods = Watch(kube, ns, "pods", keep=lambda _: None).start()
    workspaces = Watch(kube, ns, PLURAL_PREBUILT_WORKSPACES, keep=lambda _: None).start()
    watches = {"pods": pods, "prebuiltworkspaces": workspaces, "presets": presets}
    out: dict[str, Any] = {}
    try:
        for w in (presets, claims, pods, workspaces):
            await w.until(lambda _: True, 30)
        # 1. convergence, profiled
        out["load_conv"] = loadavg()
        events0 = {k: w.events for k, w in watches.items()}
        m0 = requests(scrape(env))
        passes0 = _passes(op)
        prof = Profiler(op.proc.pid, workdir / "convergence.txt")
        cpu0 = proc_sample(op.proc.pid)
        started = time.perf_counter()
        await apply_presets(env, ns, "c", PRESETS, INSTANCES)
        await presets.until(
            lambda o: len(o) >= PRESETS and all(v >= INSTANCES for v in o.values()), 480
        )
        out["conv_s"] = time.perf_counter() - started
        out["conv_cpu"] = proc_sample(op.proc.pid).cpu_s - cpu0.cpu_s
        out["conv_err"] = prof.stop()
        # Writes still in flight when the last preset showed Ready (its final status).
        await asyncio.sleep(1)
        out["conv_writes"] = by_verb_resource(delta(requests(scrape(env)), m0))
        out["conv_events"] = Counter({k: w.events - events0[k] for k, w in watches.items()})
        out["conv_passes"] = [b - a for a, b in zip(passes0, _passes(op), strict=True)]
        # 2. a warm pool of 100, then 100 claims at once, profiled
        await asyncio.to_thread(apply, env, ns, [preset("warm", CLAIMS)])
        await presets.until(lambda o: o.get("warm", 0) >= CLAIMS, 300)
        await asyncio.sleep(2)
        out["load_claims"] = loadavg()
        prof = Profiler(op.proc.pid, workdir / "claims.txt")
        cpu0 = proc_sample(op.proc.pid)
        started = time.perf_counter()
        await asyncio.gather(
            *(
                kube.create_claim(ns, claim_manifest(f"b{i}", "warm", f"u{i}"))
                for i in range(CLAIMS)
            )
        )
        await claims.until(lambda o: sum(1 for v in o.values() if v == "Bound") >= CLAIMS, 120)
        out["claims_s"] = time.perf_counter() - started
        out["claims_cpu"] = proc_sample(op.proc.pid).cpu_s - cpu0.cpu_s
        out["claims_err"] = prof.stop()
    finally:
        for w in (presets, claims, pods, workspaces):
            await w.stop()
        await kube.close()
    return out


def _passes(op: Any) -> tuple[float, float]:
    """Preset passes so far and the seconds spent in them (the operator's own
    prewarm_reconcile_duration_seconds): the count that moves with how events
    are merged into passes."""
    name = "prewarm_reconcile_duration_seconds"
    return op_metric(op, f"{name}_count"), op_metric(op, f"{name}_sum")


def _leaf_table(raw: Path, top: int = 12) -> str:
    from bench.common import hot_spots

    total, rows = hot_spots(raw, top=top)
    incl = inclusive(raw)
    lines = [f"{total} samples.", "", "| function (leaf) | self | incl. |", "|---|---|---|"]
    lines += [f"| `{f}` | {s * 100:.1f} % | {i * 100:.1f} % |" for f, s, i in rows]
    # Inclusive: where the time goes below the entry points and the event loop
    # (frames present in more than 40 % of samples are those).
    below = sorted(
        ((f, n) for f, n in incl.items() if n <= 0.4 * total),
        key=lambda r: -r[1],
    )[: top + 6]
    lines += ["", "| frame (inclusive, below the event loop) | incl. |", "|---|---|"]
    lines += [f"| `{f}` | {n * 100 / max(total, 1):.1f} % |" for f, n in below]
    return "\n".join(lines)


def run(env: BenchEnv) -> tuple[str, str]:
    ns = env.namespace("bench-profile")
    op = start_operator(env, ns)
    try:
        r = asyncio.run(_run(env, ns, op, env.workdir))
    finally:
        op.stop()
    delete_namespace(env, ns)
    if KEEP:
        Path(KEEP).mkdir(parents=True, exist_ok=True)
        for raw in ("convergence.txt", "claims.txt"):
            if (env.workdir / raw).exists():
                shutil.copy(env.workdir / raw, Path(KEEP) / raw)
    writes = Counter({k: v for k, v in r["conv_writes"].items() if k[0] in WRITE_VERBS})
    events = r["conv_events"]
    body = [
        f"### Convergence {PRESETS} x {INSTANCES} ({r['conv_s']:.0f} s, operator CPU "
        f"{r['conv_cpu']:.1f} s, load {r['load_conv']})",
        "",
        _leaf_table(env.workdir / "convergence.txt"),
        "",
        f"API writes during the convergence (apiserver_request_total, all clients, "
        f"to a second after the last preset showed all {INSTANCES} Ready):",
        "",
        request_table({"writes": writes}, keep=lambda k: k[1] != "leases"),
        "",
        "Watch events the operator's watches received (counted by the benchmark's own "
        "watches of the same objects): "
        + ", ".join(f"{k} {n}" for k, n in events.items())
        + f"; {sum(events.values())} in all.",
        "",
        f"Preset passes during the convergence (the operator's "
        f"prewarm_reconcile_duration_seconds): {r['conv_passes'][0]:.0f}, "
        f"{r['conv_passes'][1]:.1f} s of wall time in them.",
        "",
        f"### {CLAIMS} concurrent claims ({r['claims_s']:.1f} s to all Bound, operator CPU "
        f"{r['claims_cpu']:.1f} s, load {r['load_claims']})",
        "",
        _leaf_table(env.workdir / "claims.txt"),
    ]
    return "Profile: operator hot spots (py-spy)", "\n".join(body)
