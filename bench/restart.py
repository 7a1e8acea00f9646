"""Restart and memory: a fresh operator taking over 10,000 workspaces, and the
operator's RSS idle and at 10,000.

1. Idle: an operator on a namespace with no presets; RSS (/proc/PID/status
   VmRSS) once it leads and has settled.
2. Build: one operator (defaults) fills 100 presets x 100 instances (10,000
   PrebuiltWorkspace + Pod pairs) and is stopped (SIGTERM: it releases the
   Lease). Its RSS at 10,000 is read before the stop.
3. While no operator runs, two controlled changes: preset s000's instances
   raised by one, and one Ready pool pod of preset s001 deleted. The right
   decision for each is exactly one new workspace (s000: one more; s001: the
   workspace whose pod is gone marked Disrupted, deleted and replaced), and
   nothing else: no other create, no delete of a healthy workspace.
4. A fresh operator process on the same ledger, timed from its Popen:
   (a) its log line "indexes complete" (every preset, workspace, pod and claim
   listed and indexed; the log's own timestamp), (b) the first correct
   decision (the benchmark's watch sees both new workspaces) and both new pods
   Ready. Then it runs to 60 s after its start (past its first resync after
   indexing) and the API requests of the
   whole window (from before its start) are counted: the restart's writes and
   lists. RSS at 10,000 after the restart.
5. Steps 3-4 again (two other presets) with py-spy recording the fresh
   process from its start (when py-spy is found; its sampling takes some of
   the 2 cores, so that round's times are not the headline).

BENCH_RESTART_PRESETS / BENCH_RESTART_INSTANCES change the shape (default
100 x 100).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    PY_SPY,
    JsonObject,
    Profiler,
    Watch,
    apply_presets,
    delete_namespace,
    hot_spots,
    inclusive,
    loadavg,
    memory_mib,
    pod_ready,
    preset_ready,
    proc_sample,
    request_rows,
    scrape,
    start_operator,
)
from bench.env import BenchEnv
from prewarm.api.constants import (
    LABEL_PRESET,
    LABEL_WORKSPACE,
    PLURAL_PREBUILT_WORKSPACES,
    PLURAL_PRESETS,
)
from prewarm.k8s.client import Kube

PRESETS = int(os.environ.get("BENCH_RESTART_PRESETS", "100"))
INSTANCES = int(os.environ.get("BENCH_RESTART_INSTANCES", "100"))
BUILD_BUDGET_S = float(os.environ.get("BENCH_RESTART_BUILD_S", "1500"))
SETTLE_S = 60.0  # past the fresh operator's first resync (30 s) after its indexes are complete
IDLE_SETTLE_S = 10.0


def _preset_of(obj: dict[str, Any]) -> str:
    return str(((obj.get("spec") or {}).get("presetRef") or {}).get("name") or "")


def _pod_key(obj: dict[str, Any]) -> tuple[str, bool, str]:
    labels = obj["metadata"].get("labels") or {}
    return labels.get(LABEL_PRESET, ""), pod_ready(obj), labels.get(LABEL_WORKSPACE, "")


def _log_times(log: Path, offset: int) -> dict[str, Any]:
    """Wall-clock times (epoch s) of the fresh operator's milestones in its JSON log."""
    marks = {"acquired leadership": "leading", "indexes complete": "indexed"}
    out: dict[str, Any] = {}
    with log.open("rb") as f:
        f.seek(offset)
        for raw in f:
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            msg = str(rec.get("message") or rec.get("msg") or "")
            for needle, key in marks.items():
                if needle in msg and key not in out:
                    out[key] = datetime.fromisoformat(str(rec["ts"])).timestamp()
                    out[key + "_message"] = msg
    return out


IDLE_STARTS = 3


def idle_rss(env: BenchEnv) -> list[dict[str, float]]:
    """RSS of IDLE_STARTS operators, one after another, each on a namespace with no
    presets, IDLE_SETTLE_S after it leads."""
    samples = []
    for i in range(IDLE_STARTS):
        op = start_operator(env, env.namespace(f"bench-restart-idle-{i}"))
        try:
            time.sleep(IDLE_SETTLE_S)
            samples.append(memory_mib(op.proc.pid))
        finally:
            op.stop()
    return samples


async def _build(env: BenchEnv, kube: Kube, ns: str, op: Any) -> dict[str, Any]:
    presets = Watch(kube, ns, PLURAL_PRESETS, keep=preset_ready).start()
    try:
        await presets.until(lambda _: True, 30)
        load = loadavg()
        started = time.perf_counter()
        await apply_presets(env, ns, "s", PRESETS, INSTANCES)
        await presets.until(
            lambda o: len(o) >= PRESETS and all(v >= INSTANCES for v in o.values()),
            BUILD_BUDGET_S,
        )
        took = time.perf_counter() - started
        await asyncio.sleep(5)
        s = proc_sample(op.proc.pid)
    finally:
        await presets.stop()
    return {"seconds": took, "load": load, "rss": s.rss_mib, "hwm": s.hwm_mib, "cpu": s.cpu_s}


async def _change(env: BenchEnv, ns: str, pods: Watch, raised: str, disrupted: str) -> JsonObject:
    """The two controlled changes, made while no operator runs."""
    instances = INSTANCES + 1
    await asyncio.to_thread(
        env.cluster.kubectl,
        *("patch", PLURAL_PRESETS, raised, "-n", ns, "--type=merge"),
        "-p",
        json.dumps({"spec": {"prebuilds": {"instances": instances}}}),
    )
    victim = sorted(n for n, (p, ready, _) in pods.objects.items() if p == disrupted and ready)[0]
    workspace = pods.objects[victim][2]
    await asyncio.to_thread(env.cluster.kubectl, "delete", "pod", victim, "-n", ns, "--wait=true")
    await pods.until(lambda o: victim not in o, 60)
    return {"victim_pod": victim, "victim_workspace": workspace, "raised": raised,
            "disrupted": disrupted}  # fmt: skip


async def _start(op: Any, profiled: bool) -> tuple[asyncio.Task[None], Profiler | None]:
    """The fresh process (Popen now; start() waits for its /metrics in a thread),
    and py-spy on it when asked."""
    op.proc = None
    task = asyncio.create_task(asyncio.to_thread(op.start))
    while op.proc is None:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    out = op.log.with_suffix(f".restart-{time.time():.0f}.txt")
    return task, Profiler(op.proc.pid, out, rate=100) if profiled else None


async def _restart(
    env: BenchEnv, ns: str, op: Any, watches: tuple[Watch, Watch], index: int, profiled: bool
) -> JsonObject:
    """Stop the operator, change two presets' worlds, start a fresh one: its times,
    requests and memory."""
    workspaces, pods = watches
    out: JsonObject = {"profiled": profiled}
    stopped = time.perf_counter()
    await asyncio.to_thread(op.stop)
    out["stop_s"] = time.perf_counter() - stopped
    raised, disrupted = f"s{2 * index:03d}", f"s{2 * index + 1:03d}"
    out.update(await _change(env, ns, pods, raised, disrupted))
    before = set(workspaces.objects)
    out["load"] = loadavg()
    m0 = await asyncio.to_thread(scrape, env)
    offset = op.log.stat().st_size
    wall0, t0 = time.time(), time.perf_counter()
    task, profiler = await _start(op, profiled)

    def new(o: dict[str, str], preset: str) -> list[str]:
        return [n for n, p in o.items() if p == preset and n not in before]

    await workspaces.until(lambda o: bool(new(o, raised)) and bool(new(o, disrupted)), 900)
    out["decision_s"] = time.perf_counter() - t0
    out["cpu_at_decision"] = proc_sample(op.proc.pid).cpu_s
    created = set(new(workspaces.objects, raised) + new(workspaces.objects, disrupted))
    await pods.until(lambda o: sum(1 for v in o.values() if v[2] in created and v[1]) >= 2, 300)
    out["ready_s"] = time.perf_counter() - t0
    await task
    await asyncio.sleep(max(0.0, SETTLE_S - (time.perf_counter() - t0)))
    if profiler is not None:
        out["profile_note"] = profiler.stop()
        out["profile"] = profiler.out
    after = proc_sample(op.proc.pid)
    m1 = await asyncio.to_thread(scrape, env)
    out["window_s"] = time.perf_counter() - t0
    out["rss"], out["hwm"], out["cpu"] = after.rss_mib, after.hwm_mib, after.cpu_s
    out["rss_parts"] = memory_mib(op.proc.pid)
    out["created"] = sorted(set(workspaces.objects) - before)
    out["gone"] = sorted(before - set(workspaces.objects))
    out["requests"] = request_rows(m1) - request_rows(m0)
    times = _log_times(op.log, offset)
    out["log"] = {k: v - wall0 if isinstance(v, float) else v for k, v in times.items()}
    return out


def _have_py_spy() -> bool:
    return PY_SPY.exists() or shutil.which("py-spy") is not None


async def _measure(env: BenchEnv, ns: str, op: Any) -> JsonObject:
    kube = await Kube.connect(os.environ.get("KUBECONFIG"))
    total = PRESETS * INSTANCES
    workspaces = Watch(kube, ns, PLURAL_PREBUILT_WORKSPACES, keep=_preset_of)
    pods = Watch(kube, ns, "pods", keep=_pod_key)
    try:
        build = await _build(env, kube, ns, op)
        print(
            f"restart: built in {build['seconds']:.0f} s, RSS {build['rss']:.0f} MiB",
            file=sys.stderr,
        )
        workspaces.start()
        pods.start()
        await workspaces.until(lambda o: len(o) >= total, 120)
        await pods.until(lambda o: len(o) >= total, 120)
        rounds = []
        for index, profiled in enumerate((False, True) if _have_py_spy() else (False,)):
            rounds.append(await _restart(env, ns, op, (workspaces, pods), index, profiled))
            r = rounds[-1]
            print(f"restart: round {index + 1}: {r['log']} decision {r['decision_s']:.2f} s, "
                  f"RSS {r['rss']:.0f} MiB", file=sys.stderr)  # fmt: skip
    finally:
        await workspaces.stop()
        await pods.stop()
        await kube.close()
    return {"build": build, "rounds": rounds}


def run(env: BenchEnv) -> tuple[str, str]:
    load = loadavg()
    idle = idle_rss(env)
    ns = env.namespace("bench-restart")
    op = start_operator(env, ns)
    try:
        out = asyncio.run(_measure(env, ns, op))
    finally:
        op.stop()
    cleanup_s = delete_namespace(env, ns, timeout_s=120)
    title = "Restart and memory: a fresh operator over 10,000 workspaces"
    return title, _report(load, idle, out, cleanup_s)


_EXPECTED = {
    ("POST", "prebuiltworkspaces", ""): 2,
    ("POST", "pods", ""): 2,
    ("DELETE", "prebuiltworkspaces", ""): 1,
}


def _requests_table(rounds: list[JsonObject]) -> list[str]:
    keys = sorted(
        {k for r in rounds for k, n in r["requests"].items() if n > 0}
        - {k for r in rounds for k in r["requests"] if k[0] in ("GET", "WATCH")}
    )
    heads = " | ".join(f"round {i + 1}" for i in range(len(rounds)))
    lines = [
        f"| verb | resource | code | {heads} | the two changes need |",
        "|---|---|---|" + "---|" * len(rounds) + "---|",
    ]
    for verb, resource, dry, code in keys:
        if resource == "leases":
            continue
        cells = " | ".join(str(r["requests"].get((verb, resource, dry, code), 0)) for r in rounds)
        need = _EXPECTED.get((verb, resource, dry), "-") if code.startswith("2") else "-"
        what = f"{verb} ({dry})" if dry else verb
        lines.append(f"| {what} | {resource} | {code} | {cells} | {need} |")
    return lines


def _row(label: str, rounds: list[JsonObject], cell: Any) -> str:
    return f"| {label} | " + " | ".join(cell(r) for r in rounds) + " |"


def _right(r: JsonObject) -> str:
    ok = len(r["created"]) == 2 and r["gone"] == [r["victim_workspace"]]
    return f"{len(r['created'])} / {len(r['gone'])} ({'right' if ok else 'WRONG'})"


def _report(load: str, idle: list[dict[str, float]], out: JsonObject, cleanup_s: float) -> str:
    b, rounds = out["build"], out["rounds"]
    total = PRESETS * INSTANCES
    nan = float("nan")
    heads = " | ".join(
        f"round {i + 1}{' (py-spy on)' if r['profiled'] else ''}" for i, r in enumerate(rounds)
    )
    lines = [
        f"Load before {load}; before each fresh start: "
        + "; ".join(r["load"] for r in rounds)
        + f". {PRESETS} presets x {INSTANCES} instances = {total} PrebuiltWorkspace + Pod "
        f"pairs, built by one operator in {b['seconds']:.0f} s (load before {b['load']}), "
        "stopped (SIGTERM) before each round.",
        "",
        f"| measure | {heads} |",
        "|---|" + "---|" * len(rounds),
        _row("stop (SIGTERM) -> exited", rounds, lambda r: f"{r['stop_s']:.1f} s"),
        _row("fresh process start -> leading (its log)", rounds,
             lambda r: f"{r['log'].get('leading', nan):.2f} s"),
        _row(f"start -> all {total} workspaces and their pods indexed (its log)", rounds,
             lambda r: f"**{r['log'].get('indexed', nan):.2f} s**"),
        _row("start -> both new workspaces seen (the first correct decision)", rounds,
             lambda r: f"**{r['decision_s']:.2f} s**"),
        _row("start -> both new pods Ready", rounds, lambda r: f"{r['ready_s']:.2f} s"),
        _row("operator CPU, start -> decision", rounds, lambda r: f"{r['cpu_at_decision']:.1f} s"),
        _row("workspaces created / gone in the window", rounds, _right),
        _row("RSS at the window's end (peak)", rounds,
             lambda r: f"**{r['rss']:.1f} MiB** ({r['hwm']:.1f})"),
        _row("its RssAnon / RssFile", rounds, lambda r: f"{r['rss_parts'].get('RssAnon', nan):.1f}"
             f" / {r['rss_parts'].get('RssFile', nan):.1f} MiB"),
        "",
        f"RSS idle ({IDLE_STARTS} operators started one after another, each on a namespace "
        f"with no presets, read {IDLE_SETTLE_S:.0f} s after it leads): **"
        + " / ".join(f"{i['VmRSS']:.1f}" for i in idle)
        + " MiB** (RssAnon "
        + " / ".join(f"{i.get('RssAnon', nan):.1f}" for i in idle)
        + ", RssFile "
        + " / ".join(f"{i.get('RssFile', nan):.1f}" for i in idle)
        + f"). RSS of the operator that built the {total}, 5 s after: {b['rss']:.0f} MiB "
        f"(peak {b['hwm']:.0f}).",
        "",
    ]  # fmt: skip
    for i, r in enumerate(rounds):
        lines.append(
            f"Round {i + 1}: preset {r['raised']}'s instances {INSTANCES} -> {INSTANCES + 1}; "
            f"pod {r['victim_pod']} of preset {r['disrupted']} deleted (workspace "
            f"{r['victim_workspace']}). Indexed line: `{r['log'].get('indexed_message')}`."
        )
    windows = ", ".join(f"{r['window_s']:.0f} s" for r in rounds)
    lines += [
        "",
        "API requests from just before each fresh start to the window's end "
        f"({windows}; apiserver_request_total of "
        "every client: kwok, the scheduler and the controllers write too; GET, WATCH and "
        "leases left out):",
        "",
        *_requests_table(rounds),
        "",
        f"Namespace cleanup waited {cleanup_s:.0f} s (at most 120 s).",
    ]
    return "\n".join(lines + _profile(rounds))


def _profile(rounds: list[JsonObject]) -> list[str]:
    profiled = [r for r in rounds if r.get("profile")]
    if not profiled:
        return []
    raw = profiled[-1]["profile"]
    samples, rows = hot_spots(raw)
    lines = [
        "",
        f"py-spy over the profiled round, from the process start to the window's end "
        f"(100 Hz, {samples} samples; idle waits not sampled):",
        "",
        "| function (leaf) | self | incl. |",
        "|---|---|---|",
    ]
    lines += [f"| `{f}` | {own:.1%} | {inc:.1%} |" for f, own, inc in rows]
    lines += ["", "| frame (inclusive) | share |", "|---|---|"]
    lines += [f"| `{f}` | {n / max(samples, 1):.1%} |" for f, n in inclusive(raw).most_common(24)]
    return lines
