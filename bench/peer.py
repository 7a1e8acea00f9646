"""Peer: kubernetes-sigs/agent-sandbox's warm pools and prewarm's, side by side in one run.

Both controllers run on the same cluster for the whole run: agent-sandbox's
(its defaults except leader election and webhooks, both off) and prewarm's
operator (one per namespace it is measured in, shipped defaults). The same
client (one asyncio client, bench/common.py's Watch) and the same clock (the
benchmark process's) time both, in alternating order:

- fill: N pools of M replicas (the same busybox pod) from empty to every pod
  Ready (prewarm: N presets of M; agent-sandbox: N SandboxTemplates + N
  SandboxWarmPools of M), each run in a fresh namespace, BENCH_PEER_FILL_ROUNDS
  rounds (prewarm first in even rounds, agent-sandbox first in odd ones);
- claims: 1, 10 and 100 concurrent against a warm pool of 100, from the create
  call to the client's watch showing the claim Bound (prewarm, as
  bench/claims.py measures it) or Ready=True (a SandboxClaim), the same rounds
  as bench/claims.py (BENCH_PEER_CLAIM_ROUNDS, default 1x100,10x10,100x3) so
  p99 has 100 samples or more, alternating which goes first; every round
  starts on a quiet pool (the previous claims gone, the pool back to 100);
- refill after each burst of 100: last claim bound -> the pool back to 100
  (prewarm: 100 unclaimed pool pods Ready, from the pod watch; agent-sandbox:
  the SandboxWarmPool's status.readyReplicas, its only signal of which
  sandboxes are warm, so its number includes one status write of its
  controller).

The controller is built from its Go module. The Go module proxy here answers
403 for sigs.k8s.io/agent-sandbox, so `go install ...@latest` fails; the
benchmark then uses a binary built from a source snapshot if one is in the
cache (BENCH_AGENT_SANDBOX_DIR, default ~/.cache/prewarm/bin/agent-sandbox-*:
`agent-sandbox-controller` plus `crds/*.yaml` from the repository's k8s/crds;
`go build ./cmd/agent-sandbox-controller` in a checkout), and says so. The
CRDs' conversion webhook is replaced by `None` (only the storage version
v1beta1 is used; there is no webhook service here).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes.aio import client as kclient

from bench.claims import Bench, _poll, latency_cells, rounds_from_env
from bench.common import (
    Watch,
    apply,
    apply_presets,
    delete_namespace,
    loadavg,
    op_pid,
    pod_ready,
    preset,
    proc_sample,
    start_operator,
)
from bench.env import BenchEnv, percentile
from prewarm.devenv.cluster import cache_dir, free_port
from prewarm.devenv.processes import stop_process
from prewarm.k8s.client import Kube

AGENT_SANDBOX = "agent-sandbox"
POOLS = int(os.environ.get("BENCH_PEER_POOLS", "100"))
REPLICAS = int(os.environ.get("BENCH_PEER_REPLICAS", "10"))
MODULE = "sigs.k8s.io/agent-sandbox/cmd/agent-sandbox-controller"
GROUP = "extensions.agents.x-k8s.io/v1beta1"
FILL_ROUNDS = int(os.environ.get("BENCH_PEER_FILL_ROUNDS", "2"))
CLAIM_POOL = 100
CLAIM_ROUNDS = rounds_from_env("BENCH_PEER_CLAIM_ROUNDS")


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


async def _fill_timed(ns: str, pid: int, send: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    """`send()` the pools, timed by the client's pod watch to POOLS x REPLICAS pods
    Ready; the controller's (pid's) CPU meanwhile and its RSS after."""
    kube = await Kube.connect(os.environ.get("KUBECONFIG"))
    pods = Watch(kube, ns, "pods", keep=pod_ready).start()
    total = POOLS * REPLICAS
    try:
        await pods.until(lambda _: True, 30)
        cpu0 = proc_sample(pid)
        started = time.perf_counter()
        await send()
        await pods.until(lambda o: sum(1 for v in o.values() if v) >= total, 480)
        seconds = time.perf_counter() - started
        after = proc_sample(pid)
    finally:
        await pods.stop()
        await kube.close()
    return {"seconds": seconds, "cpu_s": after.cpu_s - cpu0.cpu_s, "rss_mib": after.rss_mib}


def _fill(env: BenchEnv, run: str, tag: str, peer_pid: int) -> dict[str, Any]:
    """One fill of POOLS x REPLICAS in a fresh namespace, deleted and waited for after."""
    ns = env.namespace(f"bench-peer-{run}-{tag}")
    load = loadavg()
    if run == AGENT_SANDBOX:
        result = asyncio.run(
            _fill_timed(ns, peer_pid, lambda: asyncio.to_thread(apply, env, ns, _objects()))
        )
    else:
        op = start_operator(env, ns)
        try:
            result = asyncio.run(
                _fill_timed(ns, op_pid(op), lambda: apply_presets(env, ns, "p", POOLS, REPLICAS))
            )
        finally:
            op.stop()
    delete_namespace(env, ns)
    return {**result, "load": load}


def _claim_ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class Sandboxes:
    """agent-sandbox's side of the claim rounds, timed like claims.Bench times
    prewarm's: samples into the same dict, by (concurrency, run)."""

    def __init__(self, env: BenchEnv, kube: Kube, ns: str, samples: dict[Any, list[float]]):
        self.env, self.kube, self.ns, self.samples = env, kube, ns, samples
        group, version = GROUP.split("/")
        self.ready_at: dict[str, float] = {}
        self.claims = Watch(
            kube, ns, "sandboxclaims", keep=_claim_ready, notify=self._notify,
            group=group, version=version,
        )  # fmt: skip
        self.pools = Watch(
            kube, ns, "sandboxwarmpools", group=group, version=version,
            keep=lambda o: int((o.get("status") or {}).get("readyReplicas") or 0),
        )  # fmt: skip
        self.api = kclient.CustomObjectsApi(kube.rest.api_client)
        self.counter = 0
        # (last claim Ready -> pool back, the burst's first create -> pool back)
        self.refills: list[tuple[float, float]] = []

    def _notify(self, name: str, ready: bool) -> None:
        if ready:
            self.ready_at.setdefault(name, time.perf_counter())

    def watches(self) -> list[Watch]:
        return [self.claims, self.pools]

    async def fill(self) -> None:
        objects = _objects(1, CLAIM_POOL)
        for o in objects:
            o["metadata"]["name"] = "warm"
        objects[1]["spec"]["sandboxTemplateRef"]["name"] = "warm"
        await asyncio.to_thread(apply, self.env, self.ns, objects)
        await self.quiet()

    async def quiet(self) -> None:
        await _poll(
            lambda: not self.claims.objects and self.pools.objects.get("warm", 0) >= CLAIM_POOL,
            300,
        )

    async def _one(self, name: str) -> float:
        group, version = GROUP.split("/")
        body = {
            "apiVersion": GROUP,
            "kind": "SandboxClaim",
            "metadata": {"name": name},
            "spec": {"warmPoolRef": {"name": "warm"}},
        }
        started = time.perf_counter()
        response = await self.api.create_namespaced_custom_object_without_preload_content(
            group, version, self.ns, "sandboxclaims", body
        )
        response.release()
        return started

    async def claims_round(self, n: int) -> None:
        names = [f"s{self.counter + i}" for i in range(n)]
        self.counter += n
        created = dict(
            zip(names, await asyncio.gather(*(self._one(x) for x in names)), strict=True)
        )
        await _poll(lambda: all(x in self.ready_at for x in names), 120)
        self.samples.setdefault((n, AGENT_SANDBOX), []).extend(
            (self.ready_at[x] - created[x]) * 1000 for x in names
        )
        if n == CLAIM_POOL:
            last = max(self.ready_at[x] for x in names)
            await _poll(lambda: self.pools.objects.get("warm", 0) >= CLAIM_POOL, 300)
            done = time.perf_counter()
            self.refills.append((done - last, done - min(created.values())))
        await asyncio.to_thread(
            self.env.cluster.kubectl,
            *("delete", "sandboxclaims", "--all", "-n", self.ns, "--wait=false"),
        )
        await self.quiet()


async def _claims(env: BenchEnv, ns: dict[str, str], op: Any) -> dict[str, Any]:
    """Both sides' claim rounds, alternating which goes first."""
    kube = await Kube.connect(os.environ.get("KUBECONFIG"), pool_size=256)
    bench = Bench(env, kube, ns["prewarm"], ns["unused"])
    sandboxes = Sandboxes(env, kube, ns[AGENT_SANDBOX], bench.samples)
    for watch in [*bench.watches(), *sandboxes.watches()]:
        watch.start()
    try:
        await asyncio.to_thread(apply, env, ns["prewarm"], [preset("warm", CLAIM_POOL)])
        await bench.quiet()
        await sandboxes.fill()
        for n, rounds in CLAIM_ROUNDS.items():
            for i in range(rounds):
                if i % 2:
                    await sandboxes.claims_round(n)
                    await bench.prewarm(n)
                else:
                    await bench.prewarm(n)
                    await sandboxes.claims_round(n)
    finally:
        for watch in [*bench.watches(), *sandboxes.watches()]:
            await watch.stop()
        await kube.close()
    ours = [(r["seconds"], r["since_burst"]) for r in bench.refills]
    return {"samples": bench.samples, "refills": (ours, sandboxes.refills)}


def _claim_table(samples: dict[Any, list[float]]) -> list[str]:
    lines = [
        "| concurrent | run | samples | p50 ms | p99 ms | max ms | p50 prewarm / agent-sandbox |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in CLAIM_ROUNDS:
        ratio = percentile(samples[(n, "prewarm")], 0.5) / percentile(
            samples[(n, AGENT_SANDBOX)], 0.5
        )
        for run in ("prewarm", AGENT_SANDBOX):
            lines.append(
                f"| {n} | {run} | {latency_cells(samples[(n, run)])} | "
                f"{f'**{ratio:.2f}**' if run == 'prewarm' else ''} |"
            )
    return lines


def _fill_table(fills: list[tuple[int, str, dict[str, Any]]]) -> list[str]:
    lines = [
        "| round | run | load avg before | to all pods Ready s | controller CPU s | RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for index, run, r in fills:
        lines.append(
            f"| {index} | {run} | {r['load']} | {r['seconds']:.1f} | {r['cpu_s']:.1f} | "
            f"{r['rss_mib']:.0f} |"
        )
    for index in sorted({i for i, _, _ in fills}):
        mine = {run: r["seconds"] for i, run, r in fills if i == index}
        ratio = mine["prewarm"] / mine[AGENT_SANDBOX]
        lines.append(f"| {index} | prewarm / agent-sandbox | | **{ratio:.2f}** | | |")
    return lines


def _measure(env: BenchEnv, peer_pid: int) -> dict[str, Any]:
    fills = []
    for index in range(FILL_ROUNDS):
        order = ("prewarm", AGENT_SANDBOX) if index % 2 == 0 else (AGENT_SANDBOX, "prewarm")
        for run in order:
            fills.append((index, run, _fill(env, run, str(index), peer_pid)))
    ns = {
        "prewarm": env.namespace("bench-peer-claims-prewarm"),
        "unused": env.namespace("bench-peer-claims-unused"),
        AGENT_SANDBOX: env.namespace("bench-peer-claims-sandbox"),
    }
    op = start_operator(env, ns["prewarm"])
    try:
        claims = asyncio.run(_claims(env, ns, op))
    finally:
        op.stop()
    return {"fills": fills, **claims}


def _seconds(values: list[tuple[float, float]]) -> str:
    """(from the last claim bound, from the burst's first create) per round."""
    return ", ".join(f"{a:.2f} s ({b:.2f} s)" for a, b in values) or "none (no round of 100)"


def run(env: BenchEnv) -> tuple[str, str]:
    title = "Peer: agent-sandbox warm pools on the same cluster"
    d, how = _find()
    if d is None:
        return title, f"Not measured: {how}."
    _crds(env, d)
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
        out = _measure(env, proc.pid)
    finally:
        stop_process(proc)
        log.close()
    ours, theirs = out["refills"]
    rounds = ", ".join(f"{n} x {r}" for n, r in CLAIM_ROUNDS.items())
    body = [
        f"agent-sandbox {how}; load before {load}, after {loadavg()}. Fill: {POOLS} x "
        f"{REPLICAS}, {FILL_ROUNDS} rounds. Claims (concurrent x rounds): {rounds}.",
        "",
        *_fill_table(out["fills"]),
        "",
        f"Claims against a warm pool of {CLAIM_POOL}, create -> Bound (prewarm) or "
        "Ready=True (agent-sandbox), same client and clock:",
        "",
        *_claim_table(out["samples"]),
        "",
        f"Refill after each burst of {CLAIM_POOL} (last claim bound -> the pool back to "
        f"{CLAIM_POOL}; in brackets from the burst's first create, as the refill overlaps "
        f"the burst): prewarm {_seconds(ours)}; agent-sandbox {_seconds(theirs)} "
        "(its readyReplicas status).",
    ]
    return title, "\n".join(body)
