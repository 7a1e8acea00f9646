"""Shared measuring tools: load averages, /proc readings of a process, the API
server's own request counters, preset manifests and a counting watch.

Nothing here asserts on time: benchmarks report, they do not pass or fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.aio import client as kclient

from bench.env import BenchEnv
from prewarm.api.constants import GROUP, VERSION
from prewarm.k8s.client import Kube

JsonObject = dict[str, Any]
BEHAVIOR = "sim.prewarm.dev/behavior"
PY_SPY = Path(__file__).resolve().parents[1] / ".tools" / "bin" / "py-spy"


# --- the machine -----------------------------------------------------------------------


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


@dataclass(frozen=True)
class ProcSample:
    rss_mib: float
    hwm_mib: float
    cpu_s: float
    at: float


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM and VmRSS's parts (RssAnon: the heap; RssFile: mapped files,
    shared libraries and all) in MiB, from /proc/PID/status."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    keys = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
    return {k: int(fields[k].split()[0]) / 1024 for k in keys if k in fields}


def proc_sample(pid: int) -> ProcSample:
    """RSS and peak RSS from /proc/PID/status, user+system CPU from /proc/PID/stat."""
    memory = memory_mib(pid)
    rss, hwm = memory["VmRSS"], memory["VmHWM"]
    stat = Path(f"/proc/{pid}/stat").read_text()
    after_comm = stat.rsplit(")", 1)[1].split()
    ticks = int(after_comm[11]) + int(after_comm[12])  # utime, stime (fields 14, 15)
    return ProcSample(rss, hwm, ticks / os.sysconf("SC_CLK_TCK"), time.monotonic())


CONTROL_PLANE = ("kube-apiserver", "etcd", "kwok", "kube-scheduler", "kube-controller")
# Counted with the control plane's CPU, not pinned with it (the operator's ledger).
LEDGER = "postgres"


# This benchmark process's own cluster (bench_env names it after the pid): other
# sessions on the machine run control planes too, which must be neither
# counted nor pinned.
OWN_CLUSTER = f"/clusters/prewarm-bench-{os.getpid()}/"


def _cmdline(pid: str) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _control_plane_stats(pg_port: int | None = None) -> Iterable[tuple[int, str, str]]:
    """(pid, program, /proc/PID/stat text) of this benchmark's control-plane
    processes and, with `pg_port`, of its PostgreSQL (the postmaster listening
    on that port and its children)."""
    stats: list[tuple[int, str, str, int]] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended meanwhile
        comm = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        stats.append((int(stat.parent.name), comm, text, ppid))
    postmaster = None
    if pg_port is not None:
        postmaster = next(
            (pid for pid, comm, _, _ in stats
             if comm.startswith(LEDGER) and f"-p {pg_port}" in _cmdline(str(pid))),
            None,
        )  # fmt: skip
    for pid, comm, text, ppid in stats:
        name = next((n for n in CONTROL_PLANE if comm.startswith(n)), None)
        if name and OWN_CLUSTER in _cmdline(str(pid)):
            yield pid, name, text
        elif postmaster is not None and postmaster in (pid, ppid):
            yield pid, LEDGER, text


def control_plane_pids() -> list[int]:
    return [pid for pid, _, _ in _control_plane_stats()]


def pin(pids: Iterable[int], cpus: set[int]) -> None:
    """Restrict every thread of each process to `cpus` (threads started later inherit it)."""
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task.name), cpus)


def control_plane_cpu(pg_port: int | None = None) -> Counter[str]:
    """CPU seconds so far of this benchmark's control-plane processes and, with
    `pg_port`, its PostgreSQL's, by program."""
    out: Counter[str] = Counter()
    for _, name, text in _control_plane_stats(pg_port):
        after_comm = text.rsplit(")", 1)[1].split()
        ticks = int(after_comm[11]) + int(after_comm[12])
        out[name] += ticks / os.sysconf("SC_CLK_TCK")
    return out


def op_pid(op: Any) -> int:
    assert op.proc is not None
    return int(op.proc.pid)


# --- the API server's own counters --------------------------------------------------------

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

RequestKey = tuple[str, str, str]  # verb, resource[/subresource], code


def scrape(env: BenchEnv) -> str:
    return env.cluster.kubectl("get", "--raw", "/metrics", timeout=60).stdout


def _samples(text: str, metric: str) -> Iterable[tuple[dict[str, str], float]]:
    for line in text.splitlines():
        if not line.startswith(metric + "{"):
            continue
        m = _SAMPLE.match(line)
        if m and m["name"] == metric:
            yield dict(_LABEL.findall(m["labels"])), float(m["value"])


RequestRow = tuple[str, str, str, str]  # verb, resource[/subresource], "dry run" or "", code


def request_rows(text: str) -> Counter[RequestRow]:
    """apiserver_request_total by verb, resource, dry run (a dry-run create is no
    write) and code (a refused precondition is a request, not a delete)."""
    out: Counter[RequestRow] = Counter()
    for labels, value in _samples(text, "apiserver_request_total"):
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        dry = "dry run" if labels.get("dry_run") else ""
        out[(labels.get("verb", ""), resource, dry, labels.get("code", ""))] += int(value)
    return out


def requests(text: str) -> Counter[RequestKey]:
    """apiserver_request_total summed over everything but verb, resource and code."""
    out: Counter[RequestKey] = Counter()
    for (verb, resource, _, code), n in request_rows(text).items():
        out[(verb, resource, code)] += n
    return out


def watch_events(text: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for labels, value in _samples(text, "apiserver_watch_events_total"):
        out[labels.get("kind") or labels.get("resource", "?")] += int(value)
    return out


def delta(after: Counter[Any], before: Counter[Any]) -> Counter[Any]:
    out: Counter[Any] = Counter()
    for key in set(after) | set(before):
        d = after[key] - before[key]
        if d:
            out[key] = d
    return out


WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION"}


def by_verb_resource(counts: Counter[RequestKey]) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for (verb, resource, _), n in counts.items():
        out[(verb, resource)] += n
    return out


def request_table(
    columns: Mapping[str, Counter[tuple[str, str]]],
    keep: Callable[[tuple[str, str]], bool] = lambda _: True,
) -> str:
    keys = sorted({k for c in columns.values() for k in c if keep(k)})
    head = "| verb | resource | " + " | ".join(columns) + " |"
    lines = [head, "|---|---|" + "---|" * len(columns)]
    for verb, resource in keys:
        cells = [str(c.get((verb, resource), 0)) for c in columns.values()]
        lines.append(f"| {verb} | {resource} | " + " | ".join(cells) + " |")
    if len(lines) == 2:
        lines.append("| (none) | | " + " | ".join("0" for _ in columns) + " |")
    return "\n".join(lines)


# --- manifests -------------------------------------------------------------------------


def preset(
    name: str,
    instances: int,
    labels: Mapping[str, str] | None = None,
    failure_policy: Mapping[str, Any] | None = None,
) -> JsonObject:
    spec: JsonObject = {
        "template": {
            "metadata": {"labels": dict(labels or {})},
            "spec": {"containers": [{"name": "ws", "image": "busybox:1.37"}]},
        },
        "prebuilds": {"instances": instances},
    }
    if failure_policy:
        spec["failurePolicy"] = dict(failure_policy)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Preset",
        "metadata": {"name": name},
        "spec": spec,
    }


def apply(env: BenchEnv, namespace: str, objects: list[JsonObject]) -> None:
    """One `kubectl apply` of a List (chunked: one request per object anyway)."""
    for i in range(0, len(objects), 200):
        body = {"apiVersion": "v1", "kind": "List", "items": objects[i : i + 200]}
        env.cluster.kubectl(
            "apply", "-n", namespace, "-f", "-", input=json.dumps(body), timeout=300
        )


async def apply_presets(
    env: BenchEnv,
    namespace: str,
    prefix: str,
    count: int,
    instances: int,
    *,
    digits: int = 3,
    labels: Mapping[str, str] | None = None,
    failure_policy: Mapping[str, Any] | None = None,
) -> None:
    """A fleet of `count` presets `{prefix}{i:0{digits}d}` x `instances`, applied in a
    thread (the caller's watches go on meanwhile)."""
    manifests = [
        preset(f"{prefix}{i:0{digits}d}", instances, labels, failure_policy) for i in range(count)
    ]
    await asyncio.to_thread(apply, env, namespace, manifests)


def delete_namespace(env: BenchEnv, namespace: str, timeout_s: float = 300) -> float:
    """Delete a namespace and wait until it is gone; returns the seconds it took."""
    started = time.perf_counter()
    env.cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = env.cluster.kubectl("get", "namespace", namespace, check=False)
        if got.returncode != 0:
            break
        time.sleep(1)
    return time.perf_counter() - started


def builds_rows(dsn: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(ready_at), count(failed_at) FROM builds"
        ).fetchone()
    assert row is not None
    return {"rows": row[0], "ready": row[1], "failed": row[2]}


def ledger_size(dsn: str) -> dict[str, int]:
    """Rows and bytes (heap + indexes + TOAST) of each ledger table."""
    import psycopg

    out: dict[str, int] = {}
    with psycopg.connect(dsn) as conn:
        for table in ("presets", "builds", "claims"):
            row = conn.execute(
                f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}"
            ).fetchone()
            assert row is not None
            out[f"{table}_rows"], out[f"{table}_bytes"] = row
    return out


def op_metric(op: Any, name: str) -> float:
    """Sum of one operator metric's samples (a counter or histogram _count)."""
    total = 0.0
    for line in op.metrics().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- watching --------------------------------------------------------------------------


def pod_ready(obj: JsonObject) -> bool:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


async def _lines(stream: Any) -> AsyncIterator[bytes]:
    """Newline-delimited JSON of a watch, whatever the chunking."""
    buffer = b""
    async for chunk in stream.iter_any():
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


@dataclass
class Watch:
    """Keeps the latest copy of every object of one kind in a namespace, counts
    the watch events, and wakes waiters; re-lists when a watch ends."""

    kube: Kube
    namespace: str
    plural: str  # "pods" or a custom resource's plural (prewarm.dev unless `group` says)
    keep: Callable[[JsonObject], Any] = lambda obj: obj
    notify: Callable[[str, Any], None] | None = None
    objects: dict[str, Any] = field(default_factory=dict)
    events: int = 0
    errors: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    group: str = GROUP
    version: str = VERSION

    async def _call(self, **kw: Any) -> Any:
        api = self.kube.rest.api_client
        if self.plural == "pods":
            return await kclient.CoreV1Api(api).list_namespaced_pod_without_preload_content(
                self.namespace, **kw
            )
        return await kclient.CustomObjectsApi(
            api
        ).list_namespaced_custom_object_without_preload_content(
            self.group, self.version, self.namespace, self.plural, **kw
        )

    async def _run(self) -> None:
        while True:
            try:
                response = await self._call()
                data = json.loads(await response.read())
                response.release()
                self.objects = {
                    o["metadata"]["name"]: self.keep(o) for o in data.get("items") or []
                }
                if self.notify is not None:
                    for name, value in list(self.objects.items()):
                        self.notify(name, value)
                rv = data["metadata"]["resourceVersion"]
                self.changed.set()
                response = await self._call(
                    watch=True,
                    resource_version=rv,
                    timeout_seconds=1800,
                    _request_timeout=3600.0,
                )
                try:
                    async for line in _lines(response.content):
                        event = json.loads(line)
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            break
                        self.events += 1
                        name = obj["metadata"]["name"]
                        if kind == "DELETED":
                            self.objects.pop(name, None)
                        else:
                            self.objects[name] = value = self.keep(obj)
                            if self.notify is not None:
                                self.notify(name, value)
                        self.changed.set()
                finally:
                    response.release()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a dropped connection: list again
                self.errors.append(repr(error)[:300])
                if len(self.errors) in (1, 10, 100):
                    print(f"watch {self.plural}: {error!r}"[:300], file=sys.stderr)
                await asyncio.sleep(0.5)

    def start(self) -> Watch:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def until(self, done: Callable[[dict[str, Any]], bool], timeout_s: float) -> float:
        """Seconds until `done(objects)` holds (checked on every change)."""
        started = time.perf_counter()
        async with asyncio.timeout(timeout_s):
            while True:
                self.changed.clear()
                if done(self.objects):
                    return time.perf_counter() - started
                await self.changed.wait()


def count_true(values: Iterable[Any]) -> int:
    return sum(1 for v in values if v)


# --- py-spy ----------------------------------------------------------------------------


class Profiler:
    """`py-spy record -f raw` of a process in the background, until stop()."""

    def __init__(self, pid: int, out: Path, rate: int = 50, max_s: int = 900) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        exe = str(PY_SPY) if PY_SPY.exists() else shutil.which("py-spy")
        if exe is None:
            return
        self.proc = subprocess.Popen(
            [
                *(exe, "record", "-p", str(pid), "-d", str(max_s), "-r", str(rate)),
                *("-f", "raw", "-o", str(out), "--nonblocking"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> str:
        if self.proc is None:
            return "py-spy not found"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes what it has on Ctrl-C
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode(errors="replace")[-500:]


def hot_spots(raw: Path, top: int = 12) -> tuple[int, list[tuple[str, float, float]]]:
    """(samples, [(function, self share, inclusive share)]) from a py-spy raw file.

    Each line of the raw (collapsed) format is `frame;frame;...;leaf count`.
    Idle samples (the event loop waiting in select/epoll) count in the total.
    """
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    if not raw.exists():
        return 0, []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in stack.split(";")]
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    rows = [(f, own[f] / total, incl[f] / total) for f, _ in own.most_common(top)] if total else []
    return total, rows


def inclusive(raw: Path) -> Counter[str]:
    incl: Counter[str] = Counter()
    if not raw.exists():
        return incl
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            for f in {_short(f) for f in stack.split(";")}:
                incl[f] += int(count)
    return incl


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)" ; the line is noise across samples
    m = re.match(r"^(.*?) \((.*?)(?::\d+)?\)$", frame.strip())
    if not m:
        return frame.strip()
    func, path = m.groups()
    parts = path.split("/")
    where = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{func} ({where})"


def start_operator(env: BenchEnv, namespace: str, **settings: str) -> Any:
    """The operator with the production defaults for resync and lease (the e2e
    harness shortens both), leading before this returns."""
    merged = {"PREWARM_RESYNC_SECONDS": "30", "PREWARM_LEASE_SECONDS": "15", **settings}
    op = env.operator(namespace, **merged)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "acquired leadership" not in op.log_text():
        time.sleep(0.1)
    return op


def preset_ready(obj: JsonObject) -> int:
    return int((obj.get("status") or {}).get("ready") or 0)


class Progress:
    """When a pod watch first reached each quarter of `total` pods Ready, and
    how many pods existed then: shows where one run falls behind another."""

    QUARTERS = (0.25, 0.5, 0.75, 1.0)

    def __init__(self, pods: Watch, total: int) -> None:
        self._pods = pods
        self._total = total
        self.reached: dict[float, tuple[float, int]] = {}
        self.peak_in_flight = 0  # pods existing but not Ready
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Progress:
        started = time.perf_counter()

        async def sample() -> None:
            while len(self.reached) < len(self.QUARTERS):
                ready = count_true(self._pods.objects.values())
                self.peak_in_flight = max(self.peak_in_flight, len(self._pods.objects) - ready)
                for q in self.QUARTERS:
                    if q not in self.reached and ready >= q * self._total:
                        self.reached[q] = (time.perf_counter() - started, len(self._pods.objects))
                await asyncio.sleep(0.1)

        self._task = asyncio.create_task(sample())
        return self

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def cells(self) -> str:
        """'t25 / t50 / t75 / t100 (peak in flight)' for a table cell."""
        times = " / ".join(
            f"{self.reached[q][0]:.1f}" if q in self.reached else "-" for q in self.QUARTERS
        )
        return f"{times} (peak {self.peak_in_flight} pods not Ready)"
