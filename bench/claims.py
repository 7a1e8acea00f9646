"""Claim latency: request -> Bound for 1, 10 and 100 concurrent claims against a
warm pool of 100, measured by the client (the create call to the watch event
showing Bound), next to two floors measured in the same run, by the same
client and clock, in a namespace no operator watches:

- "one create": the client creates the same WorkspaceClaim; timed to the
  watch event showing it (what any request costs on this machine);
- "create + one write": the client creates it and then writes Bound into its
  status itself; timed to the watch event showing Bound (the fewest writes
  that could bind a claim).

Rounds alternate: for every concurrency, round 0 runs the floors first and
prewarm second, round 1 prewarm first, and so on, so machine warmth and order
cancel out. Every round starts on a quiet cluster: the previous round's claims
deleted and gone, their workspaces and pods gone, the pool back to 100 Ready.
The operator runs with the shipped defaults (resync 30 s). p99 is reported
only with at least 100 samples. Last, the pool's refill after a burst of 100
claims, each round, next to its floor in the same round (alternating with it
like the claim floors): the same client re-creating 100 PrebuiltWorkspace +
Pod pairs of the pool's shape (the operator's own render_workspace/render_pod,
its create caps: max_creates_per_preset in flight) in the floor namespace,
timed from its first create to 100 pods Ready; and the API writes per claim
seen during the 1-claim rounds."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from bench.common import (
    Watch,
    apply,
    by_verb_resource,
    count_true,
    delta,
    loadavg,
    op_pid,
    pod_ready,
    preset,
    preset_ready,
    proc_sample,
    requests,
    scrape,
    start_operator,
)
from bench.env import BenchEnv, percentile
from prewarm.api.constants import LABEL_CLAIM, PLURAL_PREBUILT_WORKSPACES, PLURAL_PRESETS
from prewarm.api.constants import PLURAL_WORKSPACE_CLAIMS as CLAIMS
from prewarm.api.hashing import template_hash
from prewarm.api.preset import PresetSpec
from prewarm.commands.claim import claim_manifest
from prewarm.k8s.client import Kube
from prewarm.planning.render import render_pod, render_workspace
from prewarm.settings import Settings

POOL = 100


def rounds_from_env(variable: str, default: str = "1x100,10x10,100x3") -> dict[int, int]:
    """ "1x100,10x10,100x3": concurrent claims -> rounds."""
    pairs = (pair.split("x") for pair in os.environ.get(variable, default).split(","))
    return {int(c): int(r) for c, r in pairs}


ROUNDS = rounds_from_env("BENCH_CLAIM_ROUNDS")
RUNS = ("prewarm", "one create", "create + one write")
MIN_P99 = 100


def _warm_ready(obj: dict[str, Any]) -> bool:
    """A pool pod (no claim label) that is Ready."""
    return pod_ready(obj) and LABEL_CLAIM not in (obj["metadata"].get("labels") or {})


def _bound(obj: dict[str, Any]) -> bool:
    return (obj.get("status") or {}).get("phase") == "Bound"


async def _until_ready(count: Callable[[], int], since: float) -> dict[str, Any]:
    """Seconds from `since` until `count()` reaches POOL, the count at the start,
    when each quarter of POOL was first reached, and the 1-minute load then."""
    out: dict[str, Any] = {"at_start": count(), "quarters": [], "load": loadavg()}
    async with asyncio.timeout(300):
        while True:
            ready, now = count(), time.perf_counter()
            while len(out["quarters"]) < 4 and ready >= POOL * (len(out["quarters"]) + 1) // 4:
                out["quarters"].append(now - since)
            if ready >= POOL:
                out["seconds"] = now - since
                return out
            await asyncio.sleep(0.005)


async def _poll(done: Callable[[], bool], timeout_s: float) -> None:
    """Until `done()` holds. Polls: it reads several watches. The times measured
    come from the watches' callbacks, so the poll interval does not add to them."""
    async with asyncio.timeout(timeout_s):
        while not done():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


class Clock:
    """When the client's watch first showed each claim, and first showed it Bound."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.sources: dict[str, str] = {}

    def notify(self, name: str, obj: dict[str, Any]) -> None:
        now = time.perf_counter()
        self.seen.setdefault(name, now)
        if _bound(obj) and name not in self.bound:
            self.bound[name] = now
            self.sources[name] = str(obj["status"].get("source"))


class Bench:
    def __init__(self, env: BenchEnv, kube: Kube, ns: str, floor_ns: str) -> None:
        self.env, self.kube, self.ns, self.floor_ns = env, kube, ns, floor_ns
        self.clock = Clock()
        self.claims = Watch(kube, ns, CLAIMS, notify=self.clock.notify)
        self.floor = Watch(kube, floor_ns, CLAIMS, notify=self.clock.notify)
        # When the client's watch first showed each workspace (a refill's first create).
        self.ws_seen: dict[str, float] = {}
        self.workspaces = Watch(kube, ns, PLURAL_PREBUILT_WORKSPACES, notify=self._seen)
        self.pods = Watch(kube, ns, "pods", keep=_warm_ready)
        self.presets = Watch(kube, ns, PLURAL_PRESETS, keep=preset_ready)
        self.floor_pods = Watch(kube, floor_ns, "pods", keep=pod_ready)
        self.counter = 0
        self.samples: dict[tuple[int, str], list[float]] = {}
        self.refills: list[dict[str, Any]] = []
        self.bare_refills: list[dict[str, Any]] = []
        self.burst_started = 0.0
        # (prewarm refill, bare re-create) in the order each round ran them
        self.refill_order: list[str] = []
        self.after_bound: Callable[[], Awaitable[None]] | None = None

    def _seen(self, name: str, _: Any) -> None:
        self.ws_seen.setdefault(name, time.perf_counter())

    def watches(self) -> list[Watch]:
        return [
            self.claims, self.floor, self.workspaces, self.pods, self.presets, self.floor_pods
        ]  # fmt: skip

    def names(self, n: int) -> list[str]:
        self.counter += n
        return [f"c{self.counter - n + i}" for i in range(n)]

    async def quiet(self) -> None:
        """No claim left, no claimed workspace or pod left, the pool 100 Ready."""

        def done() -> bool:
            claimed = [
                w for w in self.workspaces.objects.values()
                if LABEL_CLAIM in (w["metadata"].get("labels") or {})
            ]  # fmt: skip
            return (
                not self.claims.objects
                and not self.floor.objects
                and not self.floor_pods.objects
                and not claimed
                and len(self.workspaces.objects) == POOL
                and len(self.pods.objects) == POOL
                and all(self.pods.objects.values())
            )

        await _poll(done, 300)

    async def timed(
        self, n: int, send: Callable[[str], Awaitable[Any]], arrived: dict[str, float]
    ) -> list[str]:
        names = self.names(n)
        created: dict[str, float] = {}

        async def one(name: str) -> None:
            created[name] = time.perf_counter()
            await send(name)

        await asyncio.gather(*(one(name) for name in names))
        await _poll(lambda: all(name in arrived for name in names), 120)
        self.record(n, names, created, arrived)
        return names

    def record(
        self, n: int, names: list[str], created: dict[str, float], arrived: dict[str, float]
    ) -> None:
        self.burst_started = min(created.values())
        run = self._current
        self.samples.setdefault((n, run), []).extend(
            (arrived[name] - created[name]) * 1000 for name in names
        )

    _current = "prewarm"

    async def prewarm(self, n: int) -> None:
        self._current = "prewarm"

        async def send(name: str) -> None:
            await self.kube.create_claim(self.ns, claim_manifest(name, "warm", f"u-{name}"))

        pool_before = set(self.workspaces.objects)
        names = await self.timed(n, send, self.clock.bound)
        if self.after_bound is not None:
            await self.after_bound()
            self.after_bound = None
        last = max(self.clock.bound[name] for name in names)
        if n == POOL:
            refill = await _until_ready(lambda: count_true(self.pods.objects.values()), last)
            done = refill["seconds"] + last
            refill["since_burst"] = done - self.burst_started
            first = min(
                t for w, t in self.ws_seen.items()
                if w not in pool_before and t >= self.burst_started
            )  # fmt: skip
            refill["since_first_create"] = done - first
            self.refills.append(refill)
            self.refill_order.append("prewarm")
        await self.delete(self.ns)

    async def floors(self, n: int) -> None:
        ns = self.floor_ns

        async def create(name: str) -> None:
            await self.kube.create_claim(ns, claim_manifest(name, "warm", f"u-{name}"))

        async def create_bind(name: str) -> None:
            await create(name)
            status = {"phase": "Bound", "workspaceName": name, "source": "prebuilt"}
            await self.kube.patch_claim_status(ns, name, {"status": status})

        self._current = "one create"
        await self.timed(n, create, self.clock.seen)
        self._current = "create + one write"
        await self.timed(n, create_bind, self.clock.bound)
        await self.delete(ns)
        if n == POOL:
            self.bare_refills.append(await self.bare_recreate())
            self.refill_order.append("bare")

    async def bare_recreate(self) -> dict[str, Any]:
        """The refill's floor: POOL workspace + pod pairs of the pool's shape created
        by this client in the floor namespace (its own copy of the preset, which no
        operator watches), at most max_creates_per_preset pairs between a
        workspace's create and its pod Ready, as the operator holds them; seconds
        from the first create to POOL pods Ready. Then they are deleted and gone."""
        ns = self.floor_ns
        listed = await self.kube.list_objects(PLURAL_PRESETS, ns)
        p = next(o for o in listed if o["metadata"]["name"] == "warm")
        spec = PresetSpec.model_validate(p["spec"])
        thash = template_hash(spec)
        sem = asyncio.Semaphore(Settings().max_creates_per_preset)
        pods = self.floor_pods

        async def pair() -> None:
            async with sem:
                ws = await self.kube.create_workspace(
                    ns, render_workspace(ns, "warm", p["metadata"]["uid"], thash)
                )
                wname, wuid = ws["metadata"]["name"], ws["metadata"]["uid"]
                pod = await self.kube.create_pod(
                    ns, render_pod(spec, ns, "warm", thash, wname, wuid)
                )
                name = pod["metadata"]["name"]
                await _poll(lambda: bool(pods.objects.get(name)), 300)

        started = time.perf_counter()
        jobs = asyncio.gather(*(pair() for _ in range(POOL)))
        took = await _until_ready(lambda: count_true(pods.objects.values()), started)
        await jobs
        await asyncio.to_thread(
            self.env.cluster.kubectl,
            *("delete", PLURAL_PREBUILT_WORKSPACES, "--all", "-n", ns, "--wait=false"),
        )
        await self.quiet()
        return took

    async def delete(self, ns: str) -> None:
        await asyncio.to_thread(
            self.env.cluster.kubectl, "delete", CLAIMS, "--all", "-n", ns, "--wait=false"
        )
        await self.quiet()


WRITES_ROUNDS = min(10, ROUNDS.get(1, 0))  # 1-claim rounds whose API requests are counted


async def _measure(env: BenchEnv, ns: str, floor_ns: str, op: Any) -> dict[str, Any]:
    kube = await Kube.connect(os.environ.get("KUBECONFIG"), pool_size=256)
    bench = Bench(env, kube, ns, floor_ns)
    for watch in bench.watches():
        watch.start()
    writes: Counter[tuple[str, str]] = Counter()
    cpu = {"s": 0.0, "claims": 0}
    try:
        await asyncio.to_thread(apply, env, ns, [preset("warm", POOL)])
        await asyncio.to_thread(apply, env, floor_ns, [preset("warm", POOL)])
        await bench.quiet()
        for n, rounds in ROUNDS.items():
            for i in range(rounds):
                counted = n == 1 and i < WRITES_ROUNDS
                before = await asyncio.to_thread(scrape, env) if counted else ""
                if i % 2:
                    await _prewarm_round(bench, n, op, cpu, env, writes, before)
                    await bench.floors(n)
                else:
                    await bench.floors(n)
                    before = await asyncio.to_thread(scrape, env) if counted else ""
                    await _prewarm_round(bench, n, op, cpu, env, writes, before)
    finally:
        for watch in bench.watches():
            await watch.stop()
        await kube.close()
    return {
        "samples": bench.samples,
        "refills": bench.refills,
        "bare_refills": bench.bare_refills,
        "refill_order": bench.refill_order,
        "writes": writes,
        "cpu": cpu,
    }


async def _prewarm_round(
    bench: Bench,
    n: int,
    op: Any,
    cpu: dict[str, Any],
    env: BenchEnv,
    writes: Counter[tuple[str, str]],
    before: str,
) -> None:
    """One prewarm round; its operator CPU (claims and refill) and, when `before`
    is a scrape, the API requests from the create until a second after Bound."""
    start = proc_sample(op_pid(op))
    if before:
        bench.after_bound = lambda: _count(env, writes, before)
    await bench.prewarm(n)
    cpu["s"] += proc_sample(op_pid(op)).cpu_s - start.cpu_s
    cpu["claims"] += n


async def _count(env: BenchEnv, writes: Counter[tuple[str, str]], before: str) -> None:
    await asyncio.sleep(1.0)  # the writes that follow Bound
    after = await asyncio.to_thread(scrape, env)
    writes.update(by_verb_resource(delta(requests(after), requests(before))))


def latency_cells(samples: list[float]) -> str:
    """`samples | p50 ms | p99 ms | max ms` of a latency table (p99 only with
    MIN_P99 samples or more)."""
    p99 = f"{percentile(samples, 0.99):.1f}" if len(samples) >= MIN_P99 else f"- (n<{MIN_P99})"
    return f"{len(samples)} | {percentile(samples, 0.5):.1f} | {p99} | {max(samples):.1f}"


def _table(samples: dict[tuple[int, str], list[float]]) -> list[str]:
    lines = [
        "| concurrent | run | samples | p50 ms | p99 ms | max ms | p50 / one create | "
        "p50 / create + one write |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in ROUNDS:
        create = percentile(samples[(n, "one create")], 0.5)
        bind = percentile(samples[(n, "create + one write")], 0.5)
        for run in RUNS:
            p50 = percentile(samples[(n, run)], 0.5)
            ratios = [p50 / create, p50 / bind]
            cells = [f"**{r:.2f}**" if run == "prewarm" else f"{r:.2f}" for r in ratios]
            lines.append(
                f"| {n} | {run} | {latency_cells(samples[(n, run)])} | " + " | ".join(cells) + " |"
            )
    return lines


_CLAIM_WRITES = {
    ("POST", "workspaceclaims"),
    ("PATCH", "prebuiltworkspaces"),
    ("PATCH", "workspaceclaims/status"),
    ("PATCH", "pods"),
}


def _writes(writes: Counter[tuple[str, str]]) -> list[str]:
    if not WRITES_ROUNDS:
        return ["(no 1-claim rounds: not counted)"]
    lines = ["| verb | resource | per claim | the claim's own |", "|---|---|---|---|"]
    for (verb, resource), count in sorted(writes.items()):
        if verb in ("GET", "LIST", "WATCH") or resource == "leases":
            continue
        own = "yes" if (verb, resource) in _CLAIM_WRITES else "refill / other"
        lines.append(f"| {verb} | {resource} | {count / WRITES_ROUNDS:.1f} | {own} |")
    # The refill's new workspace gets one status write (Ready); any other is the claim's.
    status = writes[("PATCH", "prebuiltworkspaces/status")] - writes[("POST", "prebuiltworkspaces")]
    total = (sum(writes[k] for k in _CLAIM_WRITES) + status) / WRITES_ROUNDS
    lines.append(
        f"| | **the claim's writes** (those marked yes, and prebuiltworkspaces/status "
        f"beyond one per workspace the refill created: {status / WRITES_ROUNDS:.1f}) "
        f"| **{total:.1f}** | |"
    )
    return lines


def _refills(out: dict[str, Any]) -> list[str]:
    """The refill after each burst of POOL claims next to the bare re-create of the
    same round, and their ratio."""
    lines = [
        f"Refill of the pool after each burst of {POOL} claims (last Bound -> {POOL} pool "
        f"pods Ready, client-side) against the same client re-creating {POOL} "
        "PrebuiltWorkspace + Pod pairs of the pool's shape in the same round (first "
        f"create -> {POOL} pods Ready; at most max_creates_per_preset = "
        f"{Settings().max_creates_per_preset} pairs in flight, as the operator holds "
        "itself). Quarters: when 25 / 50 / 75 / 100 pods were Ready, from the same start.",
        "",
        "| round | first | prewarm: last Bound -> 100 Ready s | pool pods Ready at last "
        "Bound | quarters s | burst start -> 100 Ready s | first refill workspace seen "
        "-> 100 Ready s | bare re-create s | bare quarters s | ratio (last Bound) | "
        "ratio (first refill create) | load (1 min) prewarm / bare |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = out["refill_order"]
    ratios, own_ratios = [], []
    pairs = zip(out["refills"], out["bare_refills"], strict=False)
    for i, (mine, bare) in enumerate(pairs):
        first = order[2 * i] if len(order) > 2 * i else "?"
        ratio = mine["seconds"] / bare["seconds"]
        own = mine["since_first_create"] / bare["seconds"]
        ratios.append(ratio)
        own_ratios.append(own)
        quarters = [" / ".join(f"{q:.1f}" for q in r["quarters"]) for r in (mine, bare)]
        lines.append(
            f"| {i + 1} | {first} | {mine['seconds']:.2f} | {mine['at_start']} | "
            f"{quarters[0]} | {mine['since_burst']:.2f} | {mine['since_first_create']:.2f} | "
            f"{bare['seconds']:.2f} | {quarters[1]} | **{ratio:.2f}** | **{own:.2f}** | "
            f"{mine['load'].split(' / ')[0]} / "
            f"{bare['load'].split(' / ')[0]} |"
        )
    if ratios:
        lines += [
            "",
            f"Median ratio, last Bound -> 100 Ready over the bare re-create: "
            f"{percentile(ratios, 0.5):.2f}x; from the first refill workspace the client saw: "
            f"{percentile(own_ratios, 0.5):.2f}x (goal <= 1.2x). The refill overlaps the burst "
            "(a workspace taken by the first claims is replaced while later claims are still "
            "bound), so 'last Bound -> 100 Ready' is what is left of it when the burst ends and "
            "moves with the burst's own length (pods Ready at last Bound); from the first "
            "refill create it is the refill's whole length, as the bare re-create's.",
        ]
    return lines


def run(env: BenchEnv) -> tuple[str, str]:
    ns = env.namespace("bench-claims")
    floor_ns = env.namespace("bench-claims-floor")
    load = loadavg()
    op = start_operator(env, ns)
    try:
        started = time.perf_counter()
        out = asyncio.run(_measure(env, ns, floor_ns, op))
        took = time.perf_counter() - started
    finally:
        op.stop()
    cpu = out["cpu"]
    rounds = ", ".join(f"{n} x {r}" for n, r in ROUNDS.items())
    lines = [
        f"Load before {load}, after {loadavg()}; {took:.0f} s in all. Rounds (concurrent x "
        f"rounds): {rounds}, alternating (even rounds: floors first; odd: prewarm first).",
        "",
        *_table(out["samples"]),
        "",
        "Every run is timed by the same client (one asyncio client, 256 connections) "
        "from the create call to its own watch showing the result: for prewarm, Bound "
        "set by the operator; for 'one create', the claim itself (in a namespace no "
        "operator watches); for 'create + one write', Bound written by the client right "
        "after its create. Each round starts with the previous round's claims, "
        "workspaces and pods gone and the pool back to 100 Ready. The operator runs "
        "with the shipped defaults (resync 30 s; claim workers and API connections as "
        "shipped). p99 only with "
        f"n >= {MIN_P99}.",
        "",
        *_refills(out),
        "",
        f"Operator CPU over the prewarm rounds (claims and their refill): {cpu['s']:.1f} s "
        f"for {cpu['claims']} claims, {cpu['s'] / cpu['claims'] * 1000:.1f} ms per claim.",
        "",
        f"API writes per claim, over {WRITES_ROUNDS} 1-claim rounds, from the create to "
        "one second after Bound (apiserver_request_total; the refill's writes and the "
        "controllers' run in the same window):",
        "",
        *_writes(out["writes"]),
    ]
    return "Claim latency (request -> Bound, client-side)", "\n".join(lines)
