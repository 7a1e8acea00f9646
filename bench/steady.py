"""Steady state: what a converged operator asks of the API server per resync.

N presets x M instances converge with PREWARM_RESYNC_SECONDS=2; then two
windows of the same length (5 resync periods) are read from the API server's
own apiserver_request_total: one with the operator running, one right after
it was stopped (the baseline: kwok, the controller-manager, the scheduler and
this benchmark's own watch go on). The operator's share is the difference.
The metric carries no client label, so subtraction is the only way to
attribute requests; the leader-election Lease renewals are shown apart.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from typing import Any

from bench.common import (
    WRITE_VERBS,
    Watch,
    apply_presets,
    by_verb_resource,
    delete_namespace,
    delta,
    loadavg,
    op_metric,
    preset_ready,
    proc_sample,
    request_table,
    requests,
    scrape,
    start_operator,
)
from bench.env import BenchEnv
from prewarm.api.constants import PLURAL_PRESETS
from prewarm.k8s.client import Kube

PRESETS = int(os.environ.get("BENCH_STEADY_PRESETS", "20"))
INSTANCES = int(os.environ.get("BENCH_STEADY_INSTANCES", "10"))
RESYNC_S = 2.0
WINDOW_S = 5 * RESYNC_S


async def _window(env: BenchEnv) -> Counter[tuple[str, str]]:
    before = requests(await asyncio.to_thread(scrape, env))
    await asyncio.sleep(WINDOW_S)
    after = requests(await asyncio.to_thread(scrape, env))
    return by_verb_resource(delta(after, before))


async def _run(env: BenchEnv, ns: str, op: Any) -> dict[str, Any]:
    kube = await Kube.connect(os.environ.get("KUBECONFIG"))
    presets = Watch(kube, ns, PLURAL_PRESETS, keep=preset_ready).start()
    try:
        await presets.until(lambda _: True, 30)
        started = time.perf_counter()
        await apply_presets(env, ns, "s", PRESETS, INSTANCES, digits=2)
        await presets.until(
            lambda o: len(o) >= PRESETS and all(v >= INSTANCES for v in o.values()), 300
        )
        converged_s = time.perf_counter() - started
        await asyncio.sleep(3 * RESYNC_S)  # let the last status patches and ledger writes land
        load_on = loadavg()
        rec0, cpu0 = (
            op_metric(op, "prewarm_reconcile_duration_seconds_count"),
            proc_sample(op.proc.pid),
        )
        with_op = await _window(env)
        rec1, cpu1 = (
            op_metric(op, "prewarm_reconcile_duration_seconds_count"),
            proc_sample(op.proc.pid),
        )
        await asyncio.to_thread(op.stop)
        await asyncio.sleep(3)  # the operator's closed watches are counted as they end
        load_off = loadavg()
        baseline = await _window(env)
    finally:
        await presets.stop()
        await kube.close()
    return {
        "converged_s": converged_s,
        "with": with_op,
        "baseline": baseline,
        "reconciles": rec1 - rec0,
        "cpu_s": cpu1.cpu_s - cpu0.cpu_s,
        "load_on": load_on,
        "load_off": load_off,
    }


def run(env: BenchEnv) -> tuple[str, str]:
    ns = env.namespace("bench-steady")
    op = start_operator(env, ns, PREWARM_RESYNC_SECONDS=str(RESYNC_S))
    try:
        r = asyncio.run(_run(env, ns, op))
    finally:
        op.stop()
    delete_namespace(env, ns)
    diff = delta(r["with"], r["baseline"])
    writes = sum(
        n for (verb, res), n in diff.items() if verb in WRITE_VERBS and res != "leases" and n > 0
    )
    lists = sum(n for (verb, _), n in diff.items() if verb == "LIST" and n > 0)
    lease = sum(n for (verb, res), n in diff.items() if res == "leases" and verb in WRITE_VERBS)
    body = [
        f"{PRESETS} presets x {INSTANCES} instances converged in {r['converged_s']:.1f} s; then "
        f"two {WINDOW_S:.0f} s windows (5 resync periods of {RESYNC_S:.0f} s): operator running "
        f"(load {r['load_on']}) and operator stopped (load {r['load_off']}).",
        "",
        "| in the window with the operator | value |",
        "|---|---|",
        f"| API writes by the operator (difference, leases excluded) | **{writes}** |",
        f"| LIST calls by the operator (difference) | **{lists}** |",
        f"| Lease writes (leader election, renew every lease_seconds/5 = 3 s) | {lease} |",
        f"| preset reconciles run | {r['reconciles']:.0f} ({r['reconciles'] / 5:.0f} per resync) |",
        f"| operator CPU | {r['cpu_s']:.2f} s ({r['cpu_s'] / WINDOW_S * 100:.1f} % of a core) |",
        "",
        "Goal: zero writes and no list calls beyond the watches. Requests by verb and "
        "resource (apiserver_request_total; WATCH is counted when a watch ends):",
        "",
        request_table(
            {"operator running": r["with"], "operator stopped": r["baseline"], "difference": diff}
        ),
    ]
    return "Steady state: API requests per resync once converged", "\n".join(body)
