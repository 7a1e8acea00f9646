"""Leadership hand-over on a rollout: two replicas, the leader stopped.

Production lease settings (15 s, renewed every 3 s). Each round stops the
leader and creates a claim right after the signal, then measures, from the
signal: the stand-by holding the Lease, and the claim Bound (by either; two warm
workspaces wait, so it is a prebuilt claim: the time is the hand-over).
SIGTERM rounds are what a rollout does (the leader releases the Lease);
one SIGKILL round shows what a crash costs (no release: the stand-by waits
until it has seen the Lease unchanged for 15 s). The stopped replica is
started again as the next stand-by.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import time
from typing import Any

from bench.common import apply, preset, preset_ready
from bench.env import BenchEnv
from prewarm.commands.claim import claim_manifest
from prewarm.devenv.operator_process import OperatorProcess
from prewarm.k8s.client import Kube

ROUNDS = int(os.environ.get("BENCH_HANDOVER_ROUNDS", "5"))
LEASE = "prewarm-operator"


def _start(env: BenchEnv, ns: str, dsn: str, n: int) -> OperatorProcess:
    op = OperatorProcess(
        env.cluster,
        dsn,
        ns,
        env.workdir / f"handover-{n}.log",
        PREWARM_LOG_FORMAT="json",
        PREWARM_LEASE_SECONDS="15",
        PREWARM_RESYNC_SECONDS="30",
    )
    op.start()
    return op


def _identity(op: OperatorProcess) -> str:
    assert op.proc is not None
    return f"{socket.gethostname()}-{op.proc.pid}"


async def _until(check: Any, limit_s: float = 60) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        if await check():
            return time.perf_counter() - started
        await asyncio.sleep(0.02)
    raise TimeoutError("hand-over did not happen")


def _leads(op: OperatorProcess) -> Any:
    async def check() -> bool:
        return "acquired leadership" in op.log_text()

    return check


def _two_warm(kube: Kube, ns: str) -> Any:
    async def check() -> bool:
        path = f"/apis/prewarm.dev/v1alpha1/namespaces/{ns}/presets/handover"
        return preset_ready(await kube.rest.request("GET", path)) >= 2

    return check


async def _round(
    kube: Kube, env: BenchEnv, ns: str, leader: OperatorProcess, standby: str, sig: int, n: int
) -> tuple[float, float]:
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{LEASE}"
    claim_path = f"/apis/prewarm.dev/v1alpha1/namespaces/{ns}/workspaceclaims/h{n}"

    async def holder_is_standby() -> bool:
        lease = await kube.rest.request("GET", lease_path)
        return bool((lease.get("spec") or {}).get("holderIdentity") == standby)

    async def claim_bound() -> bool:
        claim = await kube.rest.request("GET", claim_path)
        return bool((claim.get("status") or {}).get("phase") == "Bound")

    assert leader.proc is not None
    leader.proc.send_signal(sig)
    started = time.perf_counter()
    # Created after the signal: bound by the stopping leader (its work goes on
    # until kopf runs the cleanup) or by the new one; either way, the time
    # until it is Bound is the gap a user sees.
    await kube.create_claim(ns, claim_manifest(f"h{n}", "handover", "bench"))
    await _until(holder_is_standby)
    lease_s = time.perf_counter() - started
    await _until(claim_bound)
    bound_s = time.perf_counter() - started
    await asyncio.to_thread(leader.stop)
    if f"h{n} bound to" in leader.log_text():
        print(f"round {n}: the stopping leader bound the claim before it let go", flush=True)
    return lease_s, bound_s


async def _rounds(env: BenchEnv, ns: str, dsn: str) -> dict[str, list[tuple[float, float]]]:
    kube = await Kube.connect(os.environ.get("KUBECONFIG"))
    results: dict[str, list[tuple[float, float]]] = {"SIGTERM": [], "SIGKILL": []}
    ops = [_start(env, ns, dsn, 0)]
    try:
        await _until(_leads(ops[0]))
        ops.append(_start(env, ns, dsn, 1))
        apply(env, ns, [preset("handover", 2)])
        plan = [signal.SIGTERM] * ROUNDS + [signal.SIGKILL]
        for n, sig in enumerate(plan):
            await _until(_two_warm(kube, ns))
            leader, standby = ops[-2], ops[-1]
            await asyncio.sleep(4)  # the stand-by has seen the Lease for a while
            results[sig.name].append(
                await _round(kube, env, ns, leader, _identity(standby), sig, n)
            )
            ops.append(await asyncio.to_thread(_start, env, ns, dsn, n + 2))
    finally:
        for op in ops:
            op.stop()
        await kube.close()
    return results


def _row(name: str, values: list[tuple[float, float]]) -> str:
    lease = [v[0] for v in values]
    bound = [v[1] for v in values]
    return (
        f"| {name} | {len(values)} | {statistics.median(lease):.2f} s (max {max(lease):.2f}) "
        f"| {statistics.median(bound):.2f} s (max {max(bound):.2f}) |"
    )


def run(env: BenchEnv) -> tuple[str, str]:
    ns = env.namespace("bench-handover")
    env.pg.create_database("bench_handover")
    results = asyncio.run(_rounds(env, ns, env.pg.dsn("bench_handover")))
    body = "\n".join(
        [
            "Two replicas, lease 15 s (renewed every 3 s); a claim is created right after "
            "the leader is signalled; times from the signal.",
            "",
            "| leader stopped by | rounds | stand-by holds the Lease (median) "
            "| the claim Bound (median) |",
            "|---|---|---|---|",
            _row("SIGTERM (a rollout: the Lease is released)", results["SIGTERM"]),
            _row("SIGKILL (a crash: no release)", results["SIGKILL"]),
        ]
    )
    return "Leadership hand-over", body
