"""Claim latency: request -> Bound for 1, 10 and 100 concurrent claims against a
warm pool, measured by the client (create call to the watch event showing
Bound), and the time the pool takes to refill after 100 claims."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.env import BenchEnv, percentile
from prewarm.api.constants import PLURAL_PRESETS, PLURAL_WORKSPACE_CLAIMS
from prewarm.commands.claim import claim_manifest
from prewarm.k8s.client import Kube

POOL = 100
ROUNDS = {1: 30, 10: 6, 100: 2}


def _preset(instances: int) -> dict[str, Any]:
    return {
        "apiVersion": "prewarm.dev/v1alpha1",
        "kind": "Preset",
        "metadata": {"name": "warm"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "ws", "image": "busybox:1.37"}]}},
            "prebuilds": {"instances": instances},
        },
    }


async def _ready(kube: Kube, ns: str) -> int:
    presets = await kube.list_objects(PLURAL_PRESETS, ns)
    return int(((presets[0].get("status") or {}) if presets else {}).get("ready", 0))


async def _wait_ready(kube: Kube, ns: str, n: int) -> float:
    started = time.perf_counter()
    async with asyncio.timeout(300):
        while True:  # polls the API server, not local state
            if await _ready(kube, ns) >= n:
                return time.perf_counter() - started
            await asyncio.sleep(0.05)


async def _create(kube: Kube, ns: str, name: str, created_at: dict[str, float]) -> None:
    created_at[name] = time.perf_counter()
    await kube.create_claim(ns, claim_manifest(name, "warm", f"u-{name}"))


async def _run(env: BenchEnv, ns: str) -> dict[str, Any]:
    env.cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(_preset(POOL)))
    kube = await Kube.connect()
    bound_at: dict[str, float] = {}
    sources: dict[str, str] = {}
    seen = asyncio.Event()

    async def watch() -> None:
        while True:
            async for _, obj in kube.watch_objects(PLURAL_WORKSPACE_CLAIMS, ns):
                status = obj.get("status") or {}
                name = obj["metadata"]["name"]
                if status.get("phase") == "Bound" and name not in bound_at:
                    bound_at[name] = time.perf_counter()
                    sources[name] = str(status.get("source"))
                    seen.set()

    watcher = asyncio.create_task(watch())
    results: dict[str, Any] = {}
    try:
        await _wait_ready(kube, ns, POOL)
        counter = 0
        for concurrency, rounds in ROUNDS.items():
            samples: list[float] = []
            for _ in range(rounds):
                await _wait_ready(kube, ns, POOL)
                names = [f"b{counter + i}" for i in range(concurrency)]
                counter += concurrency
                created_at: dict[str, float] = {}

                await asyncio.gather(*(_create(kube, ns, n, created_at) for n in names))
                while not all(n in bound_at for n in names):
                    seen.clear()
                    await asyncio.wait_for(seen.wait(), 60)
                samples += [(bound_at[n] - created_at[n]) * 1000 for n in names]
                last_bound = max(bound_at[n] for n in names)
                if concurrency == 100:
                    await _wait_ready(kube, ns, POOL)
                    results["refill_after_100_s"] = time.perf_counter() - last_bound
                # Free the pool for the next round: claims (and their workspaces) go.
                env.cluster.kubectl("delete", "workspaceclaims", "--all", "-n", ns, "--wait=false")
            results[concurrency] = {
                "n": len(samples),
                "p50": percentile(samples, 0.5),
                "p90": percentile(samples, 0.9),
                "p99": percentile(samples, 0.99),
                "max": max(samples),
                "prebuilt": sum(1 for n in bound_at if sources.get(n) == "prebuilt"),
            }
    finally:
        watcher.cancel()
        await kube.close()
    return results


def run(env: BenchEnv) -> tuple[str, str]:
    ns = env.namespace("bench-claims")
    op = env.operator(ns)
    try:
        results = asyncio.run(_run(env, ns))
    finally:
        op.stop()
    lines = [
        "| concurrent claims | samples | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    for c in ROUNDS:
        r = results[c]
        cells = [c, r["n"], *(f"{r[k]:.1f}" for k in ("p50", "p90", "p99", "max"))]
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")
    lines.append("")
    lines.append(
        f"Pool of {POOL} refilled to {POOL} Ready "
        f"{results['refill_after_100_s']:.2f} s after the 100th claim was Bound."
    )
    return "Claim latency (request -> Bound, client-side)", "\n".join(lines)
