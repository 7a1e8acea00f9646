"""Claim latency: request -> Bound for 1, 10 and 100 concurrent claims against a
warm pool, measured by the client (create call to the watch event showing
Bound), and the time the pool takes to refill after 100 claims.

Next to it, the API server's floor for the same work: a bare client in a
namespace no operator watches sends each claim's writes itself, in the
operator's order and over the same client stack (create the claim; take the
workspace with a conditional patch; annotate the pod and patch the claim
Bound together; then the workspace's status), and is timed the same way, to
the watch event showing Bound. What prewarm adds above that is its own cost:
watch delivery to the operator, kopf, the reconcile, and its CPU on the same
2 cores."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from bench.common import Watch, count_true, pod_ready
from bench.env import BenchEnv, percentile
from prewarm.api.constants import (
    KIND_WORKSPACE_CLAIM,
    LABEL_CLAIM,
    PLURAL_PRESETS,
    PLURAL_WORKSPACE_CLAIMS,
)
from prewarm.api.hashing import template_hash
from prewarm.api.preset import PresetSpec
from prewarm.commands.claim import claim_manifest
from prewarm.k8s.client import Kube
from prewarm.planning.render import (
    claim_annotations,
    owner_reference,
    render_pod,
    render_workspace,
)

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


def _stats(samples: list[float]) -> dict[str, Any]:
    return {
        "n": len(samples),
        "p50": percentile(samples, 0.5),
        "p90": percentile(samples, 0.9),
        "p99": percentile(samples, 0.99),
        "max": max(samples),
    }


async def _bare(env: BenchEnv, ns: str) -> dict[int, dict[str, Any]]:
    """The claims' writes sent by the client itself; no operator watches `ns`."""
    env.cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(_preset(POOL)))
    kube = await Kube.connect(os.environ.get("KUBECONFIG"))
    preset = (await kube.list_objects(PLURAL_PRESETS, ns))[0]
    spec = PresetSpec.model_validate(preset["spec"])
    thash = template_hash(spec)
    uid = preset["metadata"]["uid"]
    sem = asyncio.Semaphore(64)

    async def warm() -> tuple[str, str]:
        async with sem:
            ws = await kube.create_workspace(ns, render_workspace(ns, "warm", uid, thash))
            name = ws["metadata"]["name"]
            await kube.create_pod(
                ns, render_pod(spec, ns, "warm", thash, name, ws["metadata"]["uid"])
            )
            return name, ws["metadata"]["resourceVersion"]

    pods = Watch(kube, ns, "pods", keep=pod_ready).start()
    total = sum(c * r for c, r in ROUNDS.items())
    pool = list(await asyncio.gather(*(warm() for _ in range(total))))
    # Measure on a quiet cluster, as prewarm's rounds are (they wait for a full pool).
    await pods.until(lambda o: count_true(o.values()) >= total, 300)
    await pods.stop()
    bound_at: dict[str, float] = {}
    seen = asyncio.Event()

    async def watch() -> None:
        while True:  # the API server ends watches now and then
            async for _, obj in kube.watch_objects(PLURAL_WORKSPACE_CLAIMS, ns):
                if (obj.get("status") or {}).get("phase") == "Bound":
                    bound_at.setdefault(obj["metadata"]["name"], time.perf_counter())
                    seen.set()

    async def claim(name: str, workspace: str, rv: str, created_at: dict[str, float]) -> None:
        created_at[name] = time.perf_counter()
        created = await kube.create_claim(ns, claim_manifest(name, "warm", f"u-{name}"))
        claim_uid = created["metadata"]["uid"]
        await kube.patch_workspace(
            ns,
            workspace,
            {
                "metadata": {
                    "resourceVersion": rv,
                    "labels": {LABEL_CLAIM: name},
                    "ownerReferences": [owner_reference(KIND_WORKSPACE_CLAIM, name, claim_uid)],
                },
                "spec": {"owner": f"u-{name}", "claimRef": {"name": name, "uid": claim_uid}},
            },
        )
        await asyncio.gather(
            kube.patch_pod(
                ns,
                workspace,
                {
                    "metadata": {
                        "labels": {LABEL_CLAIM: name},
                        "annotations": claim_annotations(f"u-{name}", 1),
                    }
                },
            ),
            kube.patch_claim_status(
                ns, name, {"status": {"phase": "Bound", "workspaceName": workspace}}
            ),
        )
        await kube.patch_workspace_status(
            ns, workspace, {"status": {"phase": "Claimed", "owner": f"u-{name}"}}
        )

    watcher = asyncio.create_task(watch())
    results: dict[int, dict[str, Any]] = {}
    try:
        await asyncio.sleep(1)  # the watch is established
        counter = 0
        for concurrency, rounds in ROUNDS.items():
            samples: list[float] = []
            for _ in range(rounds):
                names = [f"x{counter + i}" for i in range(concurrency)]
                taken = pool[counter : counter + concurrency]
                counter += concurrency
                created_at: dict[str, float] = {}
                await asyncio.gather(
                    *(claim(n, w, rv, created_at) for n, (w, rv) in zip(names, taken, strict=True))
                )
                while not all(n in bound_at for n in names):
                    seen.clear()
                    await asyncio.wait_for(seen.wait(), 60)
                samples += [(bound_at[n] - created_at[n]) * 1000 for n in names]
            results[concurrency] = _stats(samples)
    finally:
        watcher.cancel()
        await kube.close()
    return results


async def _run(env: BenchEnv, ns: str) -> dict[str, Any]:
    env.cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(_preset(POOL)))
    kube = await Kube.connect(os.environ.get("KUBECONFIG"))
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
                **_stats(samples),
                "prebuilt": sum(1 for n in bound_at if sources.get(n) == "prebuilt"),
            }
    finally:
        watcher.cancel()
        await kube.close()
    return results


def run(env: BenchEnv) -> tuple[str, str]:
    bare = asyncio.run(_bare(env, env.namespace("bench-claims-bare")))
    ns = env.namespace("bench-claims")
    op = env.operator(ns)
    try:
        results = asyncio.run(_run(env, ns))
    finally:
        op.stop()
    lines = [
        "| concurrent claims | run | samples | p50 ms | p90 ms | p99 ms | max ms | "
        "p50 / bare p50 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in ROUNDS:
        for label, r in (("prewarm", results[c]), ("bare writes", bare[c])):
            cells = [c, label, r["n"], *(f"{r[k]:.1f}" for k in ("p50", "p90", "p99", "max"))]
            ratio = (
                f"**{results[c]['p50'] / bare[c]['p50']:.2f}**" if label == "prewarm" else "1.00"
            )
            lines.append("| " + " | ".join(str(x) for x in [*cells, ratio]) + " |")
    lines += [
        "",
        "'bare writes': the same five writes per claim sent by the benchmark client "
        "itself in a namespace no operator watches (create, conditional take, pod "
        "annotations + Bound together, workspace status), timed the same way: the "
        "API server's floor for this work on this machine. Bare runs first.",
        "",
    ]
    lines.append(
        f"Pool of {POOL} refilled to {POOL} Ready "
        f"{results['refill_after_100_s']:.2f} s after the 100th claim was Bound."
    )
    return "Claim latency (request -> Bound, client-side)", "\n".join(lines)
