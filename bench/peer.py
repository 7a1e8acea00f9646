"""Peer: kubernetes-sigs/agent-sandbox's warm pool controller on the same cluster.

N SandboxTemplates + N SandboxWarmPools of M replicas (the same busybox pod as
the prewarm presets) from empty to all pods Ready, with the controller's
defaults except leader election and webhooks (both off). Also its RSS and CPU,
and SandboxClaim latency (create -> Ready) for 1, 10 and 100 concurrent claims
against a warm pool of 100, with the pool's refill time after the 100.

The controller is built from its Go module. The Go module proxy here answers
403 for sigs.k8s.io/agent-sandbox, so `go install ...@latest` fails; the
benchmark then uses a binary built from a source snapshot if one is in the
cache (BENCH_AGENT_SANDBOX_DIR, default ~/.cache/prewarm/bin/agent-sandbox-*:
`agent-sandbox-controller` plus `crds/*.yaml` from the repository's k8s/crds),
and says so. The CRDs' conversion webhook is replaced by `None` (only the
storage version v1beta1 is used; there is no webhook service here).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes.aio import client as kclient

from bench.common import (
    Watch,
    apply,
    delete_namespace,
    loadavg,
    pod_ready,
    proc_sample,
)
from bench.env import BenchEnv, percentile
from prewarm.devenv.cluster import cache_dir, free_port
from prewarm.devenv.processes import stop_process
from prewarm.k8s.client import Kube

POOLS = int(os.environ.get("BENCH_PEER_POOLS", "100"))
REPLICAS = int(os.environ.get("BENCH_PEER_REPLICAS", "10"))
MODULE = "sigs.k8s.io/agent-sandbox/cmd/agent-sandbox-controller"
GROUP = "extensions.agents.x-k8s.io/v1beta1"


def _find() -> tuple[Path | None, str]:
    configured = os.environ.get("BENCH_AGENT_SANDBOX_DIR")
    candidates = (
        [Path(configured)] if configured else sorted((cache_dir() / "bin").glob("agent-sandbox-*"))
    )
    for d in candidates:
        if (d / "agent-sandbox-controller").exists() and list((d / "crds").glob("*.yaml")):
            return d, f"built from a source snapshot ({d.name})"
    gobin = cache_dir() / "bin" / "agent-sandbox-latest"
    result = subprocess.run(
        ["go", "install", f"{MODULE}@latest"],
        env={**os.environ, "GOBIN": str(gobin)},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if result.returncode != 0:
        return None, f"`go install {MODULE}@latest` failed: {result.stderr.strip()[:300]}"
    return None, "go install worked, but the CRDs are not in the module's binary: none to apply"


def _crds(env: BenchEnv, d: Path) -> None:
    for f in sorted((d / "crds").glob("*.yaml")):
        crd = yaml.safe_load(f.read_text())
        crd["spec"]["conversion"] = {"strategy": "None"}
        env.cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(crd))
    env.cluster.kubectl("wait", "--for=condition=Established", "--all", "crd")


def _objects(pools: int = POOLS, replicas: int = REPLICAS) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(pools):
        name = f"t{i:03d}"
        out.append(
            {
                "apiVersion": GROUP,
                "kind": "SandboxTemplate",
                "metadata": {"name": name},
                "spec": {
                    "podTemplate": {
                        "spec": {"containers": [{"name": "ws", "image": "busybox:1.37"}]}
                    }
                },
            }
        )
        out.append(
            {
                "apiVersion": GROUP,
                "kind": "SandboxWarmPool",
                "metadata": {"name": name},
                "spec": {"replicas": replicas, "sandboxTemplateRef": {"name": name}},
            }
        )
    return out


async def _converge(env: BenchEnv, ns: str, pid: int) -> dict[str, Any]:
    kube = await Kube.connect(os.environ.get("KUBECONFIG"))
    pods = Watch(kube, ns, "pods", keep=pod_ready).start()
    total = POOLS * REPLICAS
    try:
        await pods.until(lambda _: True, 30)
        cpu0 = proc_sample(pid)
        started = time.perf_counter()
        await asyncio.to_thread(apply, env, ns, _objects())
        await pods.until(lambda o: sum(1 for v in o.values() if v) >= total, 480)
        seconds = time.perf_counter() - started
        await asyncio.sleep(5)
        after = proc_sample(pid)
    finally:
        await pods.stop()
        await kube.close()
    return {"seconds": seconds, "cpu": after.cpu_s - cpu0.cpu_s, "rss": after.rss_mib}


CLAIM_ROUNDS = {1: 10, 10: 3, 100: 1}
CLAIM_POOL = 100


def _claim_ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def _one_claim(api: Any, claims: Watch, ns: str, name: str) -> tuple[float, float]:
    group, version = GROUP.split("/")
    started = time.perf_counter()
    body = {
        "apiVersion": GROUP,
        "kind": "SandboxClaim",
        "metadata": {"name": name},
        "spec": {"warmPoolRef": {"name": "warm"}},
    }
    response = await api.create_namespaced_custom_object_without_preload_content(
        group, version, ns, "sandboxclaims", body
    )
    response.release()
    await claims.until(lambda o: bool(o.get(name)), 120)
    return started, time.perf_counter()


async def _claims(env: BenchEnv, ns: str) -> dict[str, Any]:
    """SandboxClaims against a warm pool of CLAIM_POOL: create -> Ready, client-side."""
    group, version = GROUP.split("/")
    kube = await Kube.connect(os.environ.get("KUBECONFIG"))
    pools = Watch(
        kube,
        ns,
        "sandboxwarmpools",
        keep=lambda o: int((o.get("status") or {}).get("readyReplicas") or 0),
        group=group,
        version=version,
    ).start()
    claims = Watch(
        kube, ns, "sandboxclaims", keep=_claim_ready, group=group, version=version
    ).start()
    api = kclient.CustomObjectsApi(kube.rest.api_client)
    out: dict[str, Any] = {}
    try:
        await pools.until(lambda _: True, 30)
        await claims.until(lambda _: True, 30)
        objects = _objects(1, CLAIM_POOL)
        for o in objects:
            o["metadata"]["name"] = "warm"
        objects[1]["spec"]["sandboxTemplateRef"]["name"] = "warm"
        await asyncio.to_thread(apply, env, ns, objects)
        counter = 0
        for concurrency, rounds in CLAIM_ROUNDS.items():
            samples: list[float] = []
            for _ in range(rounds):
                await pools.until(lambda o: o.get("warm", 0) >= CLAIM_POOL, 300)
                names = [f"c{counter + i}" for i in range(concurrency)]
                counter += concurrency
                timings = await asyncio.gather(*(_one_claim(api, claims, ns, n) for n in names))
                samples += [(end - start) * 1000 for start, end in timings]
                if concurrency == CLAIM_POOL:
                    last = max(end for _, end in timings)
                    await pools.until(lambda o: o.get("warm", 0) >= CLAIM_POOL, 300)
                    out["refill_s"] = time.perf_counter() - last
                env.cluster.kubectl("delete", "sandboxclaims", "--all", "-n", ns, "--wait=false")
            out[concurrency] = {
                "n": len(samples),
                "p50": percentile(samples, 0.5),
                "p99": percentile(samples, 0.99),
            }
    finally:
        await pools.stop()
        await claims.stop()
        await kube.close()
    return out


def run(env: BenchEnv) -> tuple[str, str]:
    title = "Peer: agent-sandbox warm pools on the same cluster"
    d, how = _find()
    if d is None:
        return title, f"Not measured: {how}."
    _crds(env, d)
    ns = env.namespace("bench-peer")
    log = (env.workdir / "agent-sandbox.log").open("wb")
    proc = subprocess.Popen(
        [
            str(d / "agent-sandbox-controller"),
            "--extensions",
            "--enable-webhook=false",
            f"--kubeconfig={env.cluster.kubeconfig}",
            "--leader-elect=false",
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            f"--health-probe-bind-address=127.0.0.1:{free_port()}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(3)
        if proc.poll() is not None:
            return title, f"Not measured: the controller exited ({proc.returncode})."
        load = loadavg()
        r = asyncio.run(_converge(env, ns, proc.pid))
        delete_namespace(env, ns)
        claims = asyncio.run(_claims(env, env.namespace("bench-peer-claims")))
    finally:
        stop_process(proc)
        log.close()
    body = [
        "| controller | load avg before | pools x replicas | to all pods Ready s | "
        "controller CPU s | RSS MiB after |",
        "|---|---|---|---|---|---|",
        f"| agent-sandbox ({how}) | {load} | {POOLS} x {REPLICAS} | {r['seconds']:.1f} | "
        f"{r['cpu']:.1f} | {r['rss']:.0f} |",
        "",
        "Same cluster and pod as the convergence benchmark, but a separate run: compare "
        "ratios to the bare client there with care (the load differs between runs).",
        "",
        f"SandboxClaims against one SandboxWarmPool of {CLAIM_POOL} (create -> condition "
        "Ready=True, client-side, as prewarm's claim benchmark measures create -> Bound):",
        "",
        "| concurrent claims | samples | p50 ms | p99 ms |",
        "|---|---|---|---|",
        *(
            f"| {c} | {claims[c]['n']} | {claims[c]['p50']:.1f} | {claims[c]['p99']:.1f} |"
            for c in CLAIM_ROUNDS
        ),
        "",
        f"Pool of {CLAIM_POOL} back to {CLAIM_POOL} ready replicas "
        f"{claims['refill_s']:.2f} s after the 100th claim was Ready.",
    ]
    return title, "\n".join(body)
