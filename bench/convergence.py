"""Convergence: N presets x M instances from empty to all Ready, prewarm versus
a bare client that creates the same PrebuiltWorkspace + Pod pairs.

Both runs start the clock at the same `kubectl apply` of the presets (the bare
client needs them too: its workspaces carry the same ownerReferences, which
the garbage collector would otherwise act on) and stop it when the last pod is
Ready per kwok, seen through a watch. The bare client renders its manifests
with the operator's own render_workspace/render_pod and holds the operator's
create caps: at most `max_creates_per_preset` pairs of one preset and
`max_creates_global` pairs in all between the workspace create and its pod
being Ready, over the same client stack (kubernetes.aio, 64 connections). It
does not patch workspace status, dry-run templates or write a ledger.

Bare runs first, its namespace is deleted and waited for, then prewarm runs
with its default settings in a fresh namespace.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench.common import (
    Watch,
    apply,
    by_verb_resource,
    delete_namespace,
    delta,
    loadavg,
    pod_ready,
    preset,
    preset_ready,
    proc_sample,
    request_table,
    requests,
    scrape,
    start_operator,
)
from bench.env import BenchEnv
from prewarm.api.constants import PLURAL_PRESETS
from prewarm.api.hashing import template_hash
from prewarm.api.preset import PresetSpec
from prewarm.k8s.client import Kube
from prewarm.planning.render import render_pod, render_workspace
from prewarm.settings import Settings

PRESETS = int(os.environ.get("BENCH_CONVERGENCE_PRESETS", "100"))
INSTANCES = int(os.environ.get("BENCH_CONVERGENCE_INSTANCES", "10"))
TIMEOUT_S = 480.0


def _presets() -> list[dict[str, Any]]:
    return [preset(f"p{i:03d}", INSTANCES) for i in range(PRESETS)]


async def _bare(env: BenchEnv, ns: str, per_preset: int, global_cap: int) -> dict[str, Any]:
    kube = await Kube.connect()
    waiting: dict[str, asyncio.Event] = {}

    def notify(name: str, ready: bool) -> None:
        if ready and name in waiting:
            waiting[name].set()

    pods = Watch(kube, ns, "pods", keep=pod_ready, notify=notify).start()
    gsem = asyncio.Semaphore(global_cap)
    in_flight = peak = 0
    try:
        await pods.until(lambda _: True, 30)
        started = time.perf_counter()
        await asyncio.to_thread(apply, env, ns, _presets())
        listed = await kube.list_objects(PLURAL_PRESETS, ns)

        async def pair(p: dict[str, Any], spec: PresetSpec, thash: str, sem: Any) -> None:
            nonlocal in_flight, peak
            async with sem, gsem:
                in_flight += 1
                peak = max(peak, in_flight)
                name, uid = p["metadata"]["name"], p["metadata"]["uid"]
                ws = await kube.create_workspace(ns, render_workspace(ns, name, uid, thash))
                wname, wuid = ws["metadata"]["name"], ws["metadata"]["uid"]
                ready = waiting.setdefault(wname, asyncio.Event())
                await kube.create_pod(ns, render_pod(spec, ns, name, thash, wname, wuid))
                await ready.wait()
                in_flight -= 1

        jobs = []
        for p in listed:
            spec = PresetSpec.model_validate(p["spec"])
            thash = template_hash(spec)
            sem = asyncio.Semaphore(per_preset)
            jobs += [pair(p, spec, thash, sem) for _ in range(INSTANCES)]
        async with asyncio.timeout(TIMEOUT_S):
            await asyncio.gather(*jobs)
        elapsed = time.perf_counter() - started
        ready_count = sum(1 for v in pods.objects.values() if v)
    finally:
        await pods.stop()
        await kube.close()
    return {"seconds": elapsed, "ready": ready_count, "peak_in_flight": peak}


async def _prewarm(env: BenchEnv, ns: str, op: Any) -> dict[str, Any]:
    kube = await Kube.connect()
    pods = Watch(kube, ns, "pods", keep=pod_ready).start()
    presets = Watch(kube, ns, PLURAL_PRESETS, keep=preset_ready).start()
    total = PRESETS * INSTANCES
    try:
        await pods.until(lambda _: True, 30)
        await presets.until(lambda _: True, 30)
        cpu0 = proc_sample(op.proc.pid)
        started = time.perf_counter()
        await asyncio.to_thread(apply, env, ns, _presets())

        async def all_pods() -> float:
            await pods.until(lambda o: sum(1 for v in o.values() if v) >= total, TIMEOUT_S)
            return time.perf_counter() - started

        async def all_status() -> float:
            await presets.until(
                lambda o: len(o) >= PRESETS and all(v >= INSTANCES for v in o.values()),
                TIMEOUT_S,
            )
            return time.perf_counter() - started

        t_pods, t_status = await asyncio.gather(all_pods(), all_status())
        cpu1 = proc_sample(op.proc.pid)
    finally:
        await pods.stop()
        await presets.stop()
        await kube.close()
    return {
        "seconds": t_pods,
        "status_seconds": t_status,
        "cpu_s": cpu1.cpu_s - cpu0.cpu_s,
        "rss_mib": cpu1.rss_mib,
        "pods": len(pods.objects),
    }


def run(env: BenchEnv) -> tuple[str, str]:
    defaults = Settings()
    per_preset, global_cap = defaults.max_creates_per_preset, defaults.max_creates_global
    rows: list[str] = []
    reqs: dict[str, Any] = {}

    ns = env.namespace("bench-conv-bare")
    load_bare = loadavg()
    m0 = requests(scrape(env))
    bare = asyncio.run(_bare(env, ns, per_preset, global_cap))
    reqs["bare"] = by_verb_resource(delta(requests(scrape(env)), m0))
    cleanup_s = delete_namespace(env, ns)

    ns = env.namespace("bench-conv-prewarm")
    op = start_operator(env, ns)
    try:
        load_op = loadavg()
        m0 = requests(scrape(env))
        pw = asyncio.run(_prewarm(env, ns, op))
        reqs["prewarm"] = by_verb_resource(delta(requests(scrape(env)), m0))
    finally:
        op.stop()
    delete_namespace(env, ns)

    total = PRESETS * INSTANCES
    ratio = pw["seconds"] / bare["seconds"]
    rows += [
        "| run | load avg before (1/5/15 min) | to all pods Ready s | "
        "to every preset status.ready s | ratio to bare |",
        "|---|---|---|---|---|",
        f"| bare client | {load_bare} | {bare['seconds']:.1f} | - | 1.00 |",
        f"| prewarm | {load_op} | {pw['seconds']:.1f} | {pw['status_seconds']:.1f} | "
        f"**{ratio:.2f}** (status: {pw['status_seconds'] / bare['seconds']:.2f}) |",
        "",
        f"{PRESETS} presets x {INSTANCES} instances = {total} PrebuiltWorkspace + Pod pairs; "
        f"goal prewarm <= 1.25x bare. Order: bare first, its namespace deleted "
        f"({cleanup_s:.0f} s, waited for), then prewarm in a fresh namespace.",
        "",
        f"Bare client concurrency: at most {per_preset} pairs per preset and {global_cap} "
        f"in all between workspace create and pod Ready (the operator's defaults "
        f"max_creates_per_preset / max_creates_global), 64 HTTP connections; peak pairs "
        f"in flight {bare['peak_in_flight']}. prewarm ran with default settings "
        f"(resync 30 s, 8 preset workers, slow start: at most hardLimit=3 in flight per "
        f"preset until one of its prebuilds is Ready). Operator CPU during the run "
        f"{pw['cpu_s']:.1f} s, RSS at the end {pw['rss_mib']:.0f} MiB.",
        "",
        "API requests during each run (apiserver_request_total deltas; these include "
        "kwok, the scheduler, the controller-manager and the benchmark's own watches):",
        "",
        request_table(reqs, keep=lambda k: k[0] not in ("WATCH",) and k[1] not in ("leases",)),
    ]
    return "Convergence (empty -> all Ready) versus a bare client", "\n".join(rows)
