"""Scale: operator memory and CPU with 1k, 5k (and 10k) PrebuiltWorkspaces.

One operator (default settings, max_instances_per_preset 500) and 100 presets
whose instances grow step by step (10 -> 50 -> 100 per preset). After each
step converges (every preset's status.ready == instances) and settles, read
RSS / peak RSS from /proc/PID/status and user+system CPU from /proc/PID/stat.
The benchmark's own watches on pods and PrebuiltWorkspaces in the namespace
(the same objects the operator watches) count the watch events, so CPU per
event is the step's CPU over the step's pod + workspace + preset events.

10k is opt-in (BENCH_SCALE_TOTALS=1000,5000,10000): on a shared 2-core box the
API server needs well over the 10-minute budget for it.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench.common import (
    Watch,
    apply_presets,
    delete_namespace,
    ledger_size,
    loadavg,
    preset_ready,
    proc_sample,
    start_operator,
)
from bench.env import BenchEnv
from prewarm.api.constants import PLURAL_PREBUILT_WORKSPACES, PLURAL_PRESETS
from prewarm.k8s.client import Kube

PRESETS = 100
TOTALS = [int(x) for x in os.environ.get("BENCH_SCALE_TOTALS", "1000,5000").split(",")]
BUDGET_S = float(os.environ.get("BENCH_SCALE_BUDGET_S", "540"))


async def _run(env: BenchEnv, ns: str, op: Any) -> tuple[list[dict[str, Any]], str]:
    kube = await Kube.connect(os.environ.get("KUBECONFIG"))
    presets = Watch(kube, ns, PLURAL_PRESETS, keep=preset_ready).start()
    pods = Watch(kube, ns, "pods", keep=lambda _: None).start()
    workspaces = Watch(kube, ns, PLURAL_PREBUILT_WORKSPACES, keep=lambda _: None).start()
    rows: list[dict[str, Any]] = []
    note = ""
    deadline = time.monotonic() + BUDGET_S
    try:
        for w in (presets, pods, workspaces):
            await w.until(lambda _: True, 30)
        idle = proc_sample(op.proc.pid)
        rows.append({"total": 0, "rss": idle.rss_mib, "hwm": idle.hwm_mib, "cpu": idle.cpu_s})
        for total in TOTALS:
            instances = total // PRESETS
            load = loadavg()
            before = proc_sample(op.proc.pid)
            events0 = pods.events + workspaces.events + presets.events
            started = time.perf_counter()
            await apply_presets(env, ns, "s", PRESETS, instances)
            remaining = deadline - time.monotonic()
            try:
                await presets.until(
                    lambda o, n=instances: len(o) >= PRESETS and all(v >= n for v in o.values()),
                    max(remaining, 1),
                )
                partial = False
            except TimeoutError:
                partial = True
            converged = time.perf_counter() - started
            if partial:
                ready = sum(presets.objects.values())
                note = (
                    f"Step {total} stopped at {ready} of {total} Ready when the "
                    f"{BUDGET_S:.0f} s budget ran out; its row is read at that moment "
                    f"({len(workspaces.objects)} workspaces existed)."
                )
            else:
                await asyncio.sleep(5)
            after = proc_sample(op.proc.pid)
            events = pods.events + workspaces.events + presets.events - events0
            rows.append(
                {
                    "total": total,
                    "load": load,
                    "seconds": converged,
                    "rss": after.rss_mib,
                    "hwm": after.hwm_mib,
                    "cpu": after.cpu_s,
                    "step_cpu": after.cpu_s - before.cpu_s,
                    "events": events,
                    "pods": len(pods.objects),
                    "workspaces": len(workspaces.objects),
                }
            )
            if partial:
                break
    finally:
        for w in (presets, pods, workspaces):
            await w.stop()
        await kube.close()
    return rows, note


def run(env: BenchEnv) -> tuple[str, str]:
    ns = env.namespace("bench-scale")
    op = start_operator(env, ns)
    try:
        rows, note = asyncio.run(_run(env, ns, op))
        ledger = ledger_size(op.dsn)
    finally:
        op.stop()
    cleanup_s = delete_namespace(env, ns, timeout_s=180)
    lines = [
        "| PrebuiltWorkspaces | load avg before | converge s | RSS MiB | peak RSS MiB | "
        "step CPU s | watch events | CPU ms / event | MiB / 1k objects vs previous |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    idle = rows[0]
    lines.append(f"| 0 (idle) | - | - | {idle['rss']:.0f} | {idle['hwm']:.0f} | - | - | - | - |")
    previous = idle
    for r in rows[1:]:
        slope = (r["rss"] - previous["rss"]) / (
            max(r["workspaces"] - previous.get("workspaces", 0), 1) / 1000
        )
        lines.append(
            f"| {r['total']} ({r['workspaces']} existed) | {r['load']} | {r['seconds']:.0f} | "
            f"**{r['rss']:.0f}** | "
            f"{r['hwm']:.0f} | {r['step_cpu']:.1f} | {r['events']} | "
            f"{r['step_cpu'] * 1000 / max(r['events'], 1):.2f} | {slope:.1f} |"
        )
        previous = r
    lines += [
        "",
        f"{PRESETS} presets; instances per preset raised step by step (one operator "
        "process throughout). Goal: < 250 MiB RSS at 5000. Watch events are those of the "
        "namespace's pods, PrebuiltWorkspaces and presets, counted by the benchmark's own "
        f"watches (what the operator's watches receive). Namespace cleanup waited "
        f"{cleanup_s:.0f} s "
        "(at most 180 s).",
    ]
    if len(rows) > 2:
        first, last = rows[1], rows[-1]
        per_obj = (
            (last["rss"] - first["rss"]) * 1024 / max(last["workspaces"] - first["workspaces"], 1)
        )
        lines.append(
            f"Memory slope {first['total']} -> {last['total']}: {per_obj:.1f} KiB RSS per "
            "PrebuiltWorkspace (with its pod)."
        )
    per_build = ledger["builds_bytes"] / max(ledger["builds_rows"], 1)
    lines += [
        "",
        f"Ledger after the last step: {ledger['builds_rows']} `builds` rows in "
        f"{ledger['builds_bytes'] / 2**20:.1f} MiB ({per_build:.0f} B per build with its "
        f"indexes), {ledger['presets_rows']} `presets` rows in "
        f"{ledger['presets_bytes'] / 2**20:.2f} MiB.",
    ]
    if note:
        lines += ["", note]
    return "Scale: operator RSS and CPU by number of PrebuiltWorkspaces", "\n".join(lines)
