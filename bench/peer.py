"""Peer: kubernetes-sigs/agent-sandbox's warm pool controller on the same cluster.

N SandboxTemplates + N SandboxWarmPools of M replicas (the same busybox pod as
the prewarm presets) from empty to all pods Ready, with the controller's
defaults except leader election and webhooks (both off). Also its RSS and CPU.

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

from bench.common import (
    Watch,
    apply,
    delete_namespace,
    loadavg,
    pod_ready,
    proc_sample,
)
from bench.env import BenchEnv
from prewarm.devenv.cluster import cache_dir, free_port
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


def _objects() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(POOLS):
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
                "spec": {"replicas": REPLICAS, "sandboxTemplateRef": {"name": name}},
            }
        )
    return out


async def _converge(env: BenchEnv, ns: str, pid: int) -> dict[str, Any]:
    kube = await Kube.connect()
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
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    cleanup = delete_namespace(env, ns)
    body = [
        "| controller | load avg before | pools x replicas | to all pods Ready s | "
        "controller CPU s | RSS MiB after |",
        "|---|---|---|---|---|---|",
        f"| agent-sandbox ({how}) | {load} | {POOLS} x {REPLICAS} | {r['seconds']:.1f} | "
        f"{r['cpu']:.1f} | {r['rss']:.0f} |",
        "",
        "Same cluster and pod as the convergence benchmark, but a separate run: compare "
        "ratios to the bare client there with care (the load differs between runs). "
        f"Namespace cleanup {cleanup:.0f} s.",
    ]
    return title, "\n".join(body)
