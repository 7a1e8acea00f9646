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

Rounds alternate the order, bare first in even rounds and prewarm first in odd
ones (BENCH_CONVERGENCE_ROUNDS, default 3, shared cores; then
BENCH_CONVERGENCE_SPLIT_ROUNDS, default 2, split cores), so machine warmth and
order cancel out; every round is reported. Each run has a fresh namespace,
deleted and waited for before the next; prewarm runs with its default
settings (resync 30 s).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from typing import Any

from bench.common import (
    CONTROL_PLANE,
    LEDGER,
    Progress,
    Watch,
    apply_presets,
    by_verb_resource,
    control_plane_cpu,
    control_plane_pids,
    delete_namespace,
    delta,
    loadavg,
    pin,
    pod_ready,
    preset_ready,
    proc_sample,
    request_table,
    requests,
    scrape,
    start_operator,
)
from bench.env import BenchEnv, percentile
from prewarm.api.constants import PLURAL_PRESETS
from prewarm.api.hashing import template_hash
from prewarm.api.preset import PresetSpec
from prewarm.k8s.client import Kube
from prewarm.planning.render import render_pod, render_workspace
from prewarm.settings import Settings

PRESETS = int(os.environ.get("BENCH_CONVERGENCE_PRESETS", "100"))
INSTANCES = int(os.environ.get("BENCH_CONVERGENCE_INSTANCES", "10"))
TIMEOUT_S = 480.0


async def _bare(env: BenchEnv, ns: str, per_preset: int, global_cap: int) -> dict[str, Any]:
    kube = await Kube.connect(os.environ.get("KUBECONFIG"))
    waiting: dict[str, asyncio.Event] = {}

    def notify(name: str, ready: bool) -> None:
        if ready and name in waiting:
            waiting[name].set()

    pods = Watch(kube, ns, "pods", keep=pod_ready, notify=notify).start()
    gsem = asyncio.Semaphore(global_cap)
    in_flight = peak = 0
    progress = Progress(pods, PRESETS * INSTANCES)
    try:
        await pods.until(lambda _: True, 30)
        started = time.perf_counter()
        progress.start()
        await apply_presets(env, ns, "p", PRESETS, INSTANCES)
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
        progress.stop()
        await pods.stop()
        await kube.close()
    return {
        "seconds": elapsed,
        "ready": ready_count,
        "peak_in_flight": peak,
        "progress": progress.cells(),
    }


async def _prewarm(env: BenchEnv, ns: str, op: Any) -> dict[str, Any]:
    kube = await Kube.connect(os.environ.get("KUBECONFIG"))
    pods = Watch(kube, ns, "pods", keep=pod_ready).start()
    presets = Watch(kube, ns, PLURAL_PRESETS, keep=preset_ready).start()
    total = PRESETS * INSTANCES
    progress = Progress(pods, total)
    try:
        await pods.until(lambda _: True, 30)
        await presets.until(lambda _: True, 30)
        cpu0 = proc_sample(op.proc.pid)
        started = time.perf_counter()
        progress.start()
        await apply_presets(env, ns, "p", PRESETS, INSTANCES)

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
        progress.stop()
        await pods.stop()
        await presets.stop()
        await kube.close()
    return {
        "seconds": t_pods,
        "status_seconds": t_status,
        "cpu_s": cpu1.cpu_s - cpu0.cpu_s,
        "rss_mib": cpu1.rss_mib,
        "pods": len(pods.objects),
        "progress": progress.cells(),
    }


def _bare_run(env: BenchEnv, ns: str) -> dict[str, Any]:
    defaults = Settings()
    per_preset, global_cap = defaults.max_creates_per_preset, defaults.max_creates_global
    return asyncio.run(_bare(env, ns, per_preset, global_cap))


def _one(env: BenchEnv, run: str, split: bool, tag: str) -> dict[str, Any]:
    """One run (`bare` or `prewarm`) in a fresh namespace, deleted and waited for
    after: the result, its load before, control-plane CPU and API requests."""
    ns = env.namespace(f"bench-conv-{run}-{tag}")
    op = start_operator(env, ns) if run == "prewarm" else None
    if split and op is not None:
        pin([op.proc.pid], {1})
    try:
        load = loadavg()
        m0 = requests(scrape(env))
        c0, own0 = control_plane_cpu(env.pg.port), time.process_time()
        result = asyncio.run(_prewarm(env, ns, op)) if op else _bare_run(env, ns)
        cpu = delta(control_plane_cpu(env.pg.port), c0)
        cpu["benchmark process"] = time.process_time() - own0
        if op is not None:
            cpu["prewarm operator"] = result["cpu_s"]
        reqs = by_verb_resource(delta(requests(scrape(env)), m0))
    finally:
        if op is not None:
            op.stop()
    cleanup = delete_namespace(env, ns)
    return {**result, "load": load, "cpu": cpu, "reqs": reqs, "cleanup_s": cleanup}


def _round(env: BenchEnv, split: bool, index: int) -> dict[str, Any]:
    """A bare run and a prewarm run, bare first in even rounds and prewarm first in
    odd ones; with `split`, the control plane runs on CPU 0 and the client (the
    bare client or the operator) on CPU 1."""
    order = ("bare", "prewarm") if index % 2 == 0 else ("prewarm", "bare")
    tag = f"{'split' if split else 'shared'}{index}"
    if split:
        pin(control_plane_pids(), {0})
        pin([os.getpid()], {1})
    try:
        out = {run: _one(env, run, split, tag) for run in order}
    finally:
        if split:
            every = set(range(os.cpu_count() or 1))
            pin([*control_plane_pids(), os.getpid()], every)
    return {**out, "order": order}


ROUNDS = int(os.environ.get("BENCH_CONVERGENCE_ROUNDS", "3"))
SPLIT_ROUNDS = int(os.environ.get("BENCH_CONVERGENCE_SPLIT_ROUNDS", "2"))


def _rows(label: str, index: int, r: dict[str, Any]) -> list[str]:
    b, p = r["bare"], r["prewarm"]
    first = "bare first" if r["order"][0] == "bare" else "prewarm first"
    return [
        f"| {label} {index + 1} ({first}) | bare client | {b['load']} | {b['seconds']:.1f} | - "
        f"| 1.00 | {b['progress']} |",
        f"| {label} {index + 1} ({first}) | prewarm | {p['load']} | {p['seconds']:.1f} | "
        f"{p['status_seconds']:.1f} | **{p['seconds'] / b['seconds']:.2f}** "
        f"(status: {p['status_seconds'] / b['seconds']:.2f}) | {p['progress']} |",
    ]


def _ratios(rounds: list[dict[str, Any]]) -> str:
    ratios = sorted(r["prewarm"]["seconds"] / r["bare"]["seconds"] for r in rounds)
    if not ratios:
        return "-"
    return (
        f"median {percentile(ratios, 0.5):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in ratios)})"
    )


def _mean(rounds: list[dict[str, Any]], run: str, key: str) -> Counter[Any]:
    total: Counter[Any] = Counter()
    for r in rounds:
        total.update(r[run][key])
    return Counter({k: v / len(rounds) for k, v in total.items()})


def run(env: BenchEnv) -> tuple[str, str]:
    defaults = Settings()
    shared = [_round(env, False, i) for i in range(ROUNDS)]
    split_ok = (os.cpu_count() or 1) >= 2
    split = [_round(env, True, i) for i in range(SPLIT_ROUNDS)] if split_ok else []
    total = PRESETS * INSTANCES
    cpu = {run: _mean(shared, run, "cpu") for run in ("bare", "prewarm")}
    reqs = {run: _mean(shared, run, "reqs") for run in ("bare", "prewarm")}
    op_cpu = [r["prewarm"]["cpu_s"] for r in shared]
    lines = [
        f"Time to all pods Ready, prewarm / bare client: shared cores {_ratios(shared)}; "
        f"split {_ratios(split)}.",
        "",
        "| round | run | load avg before (1/5/15 min) | to all pods Ready s | "
        "to every preset status.ready s | ratio to bare | 25 / 50 / 75 / 100 % Ready at s |",
        "|---|---|---|---|---|---|---|",
        *(row for i, r in enumerate(shared) for row in _rows("shared", i, r)),
        *(row for i, r in enumerate(split) for row in _rows("split", i, r)),
        "",
        f"{PRESETS} presets x {INSTANCES} instances = {total} PrebuiltWorkspace + Pod pairs; "
        "goal prewarm <= 1.2x bare. Rounds alternate the order (bare first, then prewarm "
        "first); every run has a fresh namespace, deleted and waited for before the next "
        "run. 'shared': every process may run on both cores (the operator competes with "
        "the API server for CPU, as the bare client does). 'split': the control plane "
        "(kube-apiserver, etcd, kwok, scheduler, controller-manager) pinned to CPU 0 and "
        "the client - the bare client or the operator - to CPU 1, as when the operator "
        "runs on a node of its own.",
        "",
        f"Bare client concurrency: at most {defaults.max_creates_per_preset} pairs per "
        f"preset and {defaults.max_creates_global} in all between workspace create and pod "
        "Ready (the operator's defaults max_creates_per_preset / max_creates_global), 64 "
        f"HTTP connections; peak pairs in flight "
        f"{max(r['bare']['peak_in_flight'] for r in shared)}. prewarm ran with default "
        f"settings (resync 30 s, {defaults.preset_workers} preset workers, slow start: at "
        "most hardLimit=3 in flight per preset until one of its prebuilds is Ready). "
        "Operator CPU in the shared rounds: "
        + ", ".join(f"{c:.1f} s ({c * 1000 / total:.1f} ms per workspace)" for c in op_cpu)
        + f"; RSS at the end {shared[-1]['prewarm']['rss_mib']:.0f} MiB.",
        "",
        "CPU seconds used during the shared runs, by process, mean over the rounds (2 "
        "cores: the machine's limit is 2 CPU s per second; the benchmark process is the "
        "bare client in the bare run and only watches in the prewarm run):",
        "",
        "| process | bare | prewarm |",
        "|---|---|---|",
        *(
            f"| {name} | {cpu['bare'].get(name, 0):.1f} | {cpu['prewarm'].get(name, 0):.1f} |"
            for name in [*CONTROL_PLANE, LEDGER, "prewarm operator", "benchmark process"]
        ),
        f"| **sum** | {sum(cpu['bare'].values()):.1f} | {sum(cpu['prewarm'].values()):.1f} |",
        "",
        "API requests during the shared runs, mean over the rounds "
        "(apiserver_request_total deltas; these include kwok, the scheduler, the "
        "controller-manager and the benchmark's own watches):",
        "",
        request_table(
            {k: Counter({kk: round(v) for kk, v in c.items()}) for k, c in reqs.items()},
            keep=lambda k: k[0] not in ("WATCH",) and k[1] not in ("leases",),
        ),
    ]
    return "Convergence (empty -> all Ready) versus a bare client", "\n".join(lines)
