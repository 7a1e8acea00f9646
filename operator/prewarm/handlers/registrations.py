"""kopf registrations: indexes feed memory, events feed the work queue. kopf
keeps the Presets; the WorkspaceClaims, the PrebuiltWorkspaces and their pods
are the operator's own watches (k8s/list_watch.py, handlers/object_index.py).

No create/update handlers and no daemons: those make kopf write progress
annotations and finalizers. Indexes and `on.event` handlers write nothing,
so a converged operator makes zero API writes, and deleting a preset never
waits for the operator.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
from collections.abc import Iterable
from functools import partial
from typing import Any

import aiohttp
import kopf
from aiohttp import web

from prewarm import metrics
from prewarm.api.constants import (
    GROUP,
    LABEL_WORKSPACE,
    PLURAL_PREBUILT_WORKSPACES,
    PLURAL_PRESETS,
    PLURAL_WORKSPACE_CLAIMS,
    VERSION,
)
from prewarm.handlers import process_memory
from prewarm.handlers.claims import reconcile_claim
from prewarm.handlers.http import start_http
from prewarm.handlers.object_index import (
    E,
    ObjectIndex,
    read_claim,
    read_pod,
    read_workspace,
)
from prewarm.handlers.presets import reconcile_preset
from prewarm.handlers.runtime import Runtime
from prewarm.handlers.watched import (
    ClaimEntry,
    PodEntry,
    PresetEntry,
    PresetKey,
    WorkspaceEntry,
)
from prewarm.k8s.client import Kube
from prewarm.k8s.core import ApiError, ClusterConfigError, JsonObject, credentials
from prewarm.k8s.lease import LeaderElector, stop_and_release
from prewarm.k8s.list_watch import PAGE_SIZE, RETRY_MAX_S, ListWatch, holds_any, scope_path
from prewarm.ledger.repository import Ledger, LedgerUnavailable
from prewarm.logs import log_context
from prewarm.planning.agent_image import choose_agent_image
from prewarm.planning.claims import awaits_answer
from prewarm.settings import DEFAULT_AGENT_IMAGE, Settings
from prewarm.workqueue import WorkQueue

log = logging.getLogger("prewarm.operator")

# Claims handled at once (each a different claim: the queue never runs one key
# twice at a time), and the API connections they share with the pool's work.
# 128 workers over 256 connections were measured against these, alternating
# in one session: latency within the noise, operator CPU per claim 20-30 %
# higher (perhaps a TLS handshake per extra connection on each burst):
# docs/decisions.md, "Claims do not wait for each other".
CLAIM_WORKERS = 64
API_CONNECTIONS = 64

# A pod's events come in bursts (created, bound, started, Ready within
# milliseconds on a fast node), and so do a workspace's (created, status
# written, taken): its preset's pass waits this long for the rest of the
# burst, so one pass sees them all instead of one pass per event
# (docs/decisions.md, "Pod events wake their preset within 100 ms" and "A
# workspace's event wakes its preset within 100 ms"; a pod turning Ready waking
# it at once was tried and cost more than it gave).
POD_WAKE_DELAY_S = 0.1

# The resync looks this often per period (PREWARM_RESYNC_SECONDS) for presets
# and claims that had no pass for most of one: each gets a pass at most a
# period after its last, and one that had a pass of its own (an event's) is
# not looked at again at the same time (docs/decisions.md, "The resync skips
# what just had a pass").
RESYNC_TICKS = 4

# Longest wait between two attempts to open the ledger at start.
LEDGER_RETRY_MAX_S = 10.0

# One runtime per process; kopf handlers reach it through this holder.
_state: dict[str, Runtime] = {}
_workers: dict[str, asyncio.Task[None]] = {}
_state_http: dict[str, web.AppRunner] = {}
_electors: dict[str, LeaderElector] = {}


def _readiness(rt: Runtime) -> dict[str, object]:
    up = rt.ledger.is_open and rt.writes.healthy and rt.ledger_ok
    ledger = "ok" if up else "unavailable"
    metrics.ledger_up.set(1 if ledger == "ok" else 0)
    metrics.ledger_backlog.set(rt.writes.backlog)
    return {"ready": ledger == "ok", "ledger": ledger, "ledgerBacklog": rt.writes.backlog}


def runtime() -> Runtime:
    return _state["runtime"]


class NoDiffBase(kopf.DiffBaseStorage):
    """No "last handled" essence. kopf builds one (a deep copy of the body) and
    diffs it on every event for its on.create/on.update/on.field handlers; the
    operator has none of those (indexes and on.event only), and that copy was
    14 % of its CPU while pools filled (docs/benchmarks.md)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: kopf.Body) -> None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf's settings: no diff-base, quiet Events, bounded watches, paged listings."""
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.level = logging.WARNING
    # A watch that hangs half-open (seen when the API server restarts) would
    # otherwise go quiet for good: the server ends each watch after 45 s and
    # the client abandons one after 60 s, so any watch recovers within a
    # minute. Re-watching resumes from the last resourceVersion: no re-list.
    settings.watching.server_timeout = 45
    settings.watching.client_timeout = 60
    # The initial listings in pages, as the operator's own watches' (k8s/list_watch.py).
    settings.watching.chunk_size = PAGE_SIZE


@kopf.on.login()
async def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf's watches connect as the operator's own client does: the same
    kubeconfig setting (kopf's own login read only $KUBECONFIG, and tried the
    service account first) through the same loader, not kopf's reading of it
    with the synchronous client, which the operator does not load."""
    config = Settings()
    try:
        found = await credentials(config.kubeconfig, config.in_cluster)
    except ClusterConfigError as error:
        raise kopf.LoginError(f"no way to the API server: {error}") from None
    return kopf.ConnectionInfo(
        server=found.server,
        ca_path=found.ca_path,
        insecure=found.insecure,
        username=found.username,
        password=found.password,
        scheme=found.scheme,
        token=found.token,
        certificate_path=found.certificate_path,
        private_key_path=found.private_key_path,
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    config = Settings()
    configure_kopf(settings)
    # Not connected yet: PostgreSQL may be down, and the operator starts anyway
    # (claims served, no creates, Degraded), as a running one rides out an outage.
    ledger = Ledger.deferred(config.database_url)
    kube = await Kube.connect(
        config.kubeconfig, config.in_cluster, API_CONNECTIONS, instance=config.pod_name
    )
    config = await _with_agent_image(kube, config)
    rt = Runtime(settings=config, kube=kube, ledger=ledger)
    rt.presets = kwargs["preset_index"]
    scopes: list[str | None] = [*config.namespaces] or [None]
    rt.claims = _watch_claims(rt, kube, scopes)
    rt.workspaces = _watch_workspaces(rt, kube, scopes)
    rt.pods = _watch_pods(rt, kube, scopes)
    _workers["no presets"] = asyncio.create_task(_kopf_complete_if_no_presets(rt, kube, scopes))
    _state["runtime"] = rt
    metrics.ledger_up.set(0)
    if config.metrics_port:
        _state_http["runner"] = await start_http(config.metrics_port, lambda: _readiness(rt))
    _workers["ledger"] = asyncio.create_task(_open_ledger(rt))
    _workers["lead"] = asyncio.create_task(_lead_then_work(rt, kube, config))


def _watch(
    kube: Kube,
    index: ObjectIndex[E],
    scopes: list[str | None],
    plural: str,
    what: str,
    group: str = GROUP,
    selector: str = "",
) -> ObjectIndex[E]:
    """Feed `index` from the operator's own watches (k8s/list_watch.py): one
    per namespace of `scopes`, or (None) one of the cluster; on every replica,
    as kopf's watches."""
    version = VERSION if group else "v1"
    for scope in scopes:
        path = scope_path(group, version, plural, scope)
        watch = ListWatch(kube.rest, path, index.scope(scope), what=what, selector=selector)
        _workers[f"{plural} {scope or '*'}"] = asyncio.create_task(watch.run())
    return index


def _watch_pods(rt: Runtime, kube: Kube, scopes: list[str | None]) -> ObjectIndex[PodEntry]:
    """The workspace pods (only those with the workspace label)."""
    pods = ObjectIndex(
        read_pod, partial(_wake_pod, rt), scopes, lambda: _index_complete(rt, "pods")
    )
    return _watch(kube, pods, scopes, "pods", "pod", group="", selector=LABEL_WORKSPACE)


def _watch_workspaces(
    rt: Runtime, kube: Kube, scopes: list[str | None]
) -> ObjectIndex[WorkspaceEntry]:
    """The PrebuiltWorkspaces; one that goes is forgotten."""
    workspaces = ObjectIndex(
        read_workspace,
        partial(_wake_workspace, rt),
        scopes,
        lambda: _index_complete(rt, "workspaces"),
        lambda entry: rt.forget_workspace(entry.uid),
    )
    return _watch(kube, workspaces, scopes, PLURAL_PREBUILT_WORKSPACES, "workspace")


def _watch_claims(rt: Runtime, kube: Kube, scopes: list[str | None]) -> ObjectIndex[ClaimEntry]:
    """The WorkspaceClaims: each event wakes the claim at once, and one that
    goes is forgotten."""
    claims = ObjectIndex(
        read_claim,
        partial(_wake_claim, rt),
        scopes,
        partial(_claims_listed, rt),
        lambda entry: rt.forget_claim((entry.namespace, entry.name)),
    )
    return _watch(kube, claims, scopes, PLURAL_WORKSPACE_CLAIMS, "claim")


def _claims_listed(rt: Runtime) -> None:
    """The claims' first listing is in. The ones whose users still wait look
    at once (kopf woke every listed claim); a Bound one gets its first pass from
    the resync's first tick."""
    for key in rt.claim_keys():
        claim = rt.claim(key)
        if claim is not None and awaits_answer(claim.status.get("phase")):
            rt.claim_queue.add(key)
    _index_complete(rt, "claims")


async def _kopf_complete_if_no_presets(rt: Runtime, kube: Kube, scopes: list[str | None]) -> None:
    """kopf's preset index proves itself complete by the first preset event;
    without any preset there is none, and the claims (of a preset that does not
    exist yet) would wait for one. A listing that finds none says the same."""
    delay = 1.0
    while True:
        try:
            for scope in scopes:
                if await holds_any(kube.rest, scope_path(GROUP, VERSION, PLURAL_PRESETS, scope)):
                    return  # its event comes
            _index_complete(rt, "kopf")
            return
        except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as error:
            log.warning("cannot list presets: %s; again in %.0fs", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


async def _with_agent_image(kube: Kube, config: Settings) -> Settings:
    """The settings with the agent image chosen (planning.agent_image): the explicit
    setting, else the image of this pod's operator container, else the default.
    Reading its own pod needs `get` on pods in its namespace (the chart's
    `-self` Role); without it the operator starts anyway with the default."""
    pod: JsonObject | None = None
    if not config.agent_image and config.pod_name and config.pod_namespace:
        try:
            pod = await kube.get_pod(config.pod_namespace, config.pod_name)
        except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("cannot read the operator's own pod for the agent image: %s", exc)
    image, source = choose_agent_image(config.agent_image, pod, DEFAULT_AGENT_IMAGE)
    log.info("agent image %s (from the %s)", image, source)
    return config.model_copy(update={"agent_image": image})


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    # SIGTERM (a rollout): stop the work, then release the Lease so a stand-by
    # takes over at once instead of a lease duration later.
    tasks = list(_workers.values())
    _workers.clear()
    elector = _electors.pop("elector", None)
    if elector is not None:
        await stop_and_release(elector, tasks)
    for task in tasks:
        task.cancel()
    runner = _state_http.pop("runner", None)
    if runner is not None:
        await runner.cleanup()
    rt = _state.pop("runtime", None)
    if rt is not None:
        await rt.kube.close()
        await rt.ledger.close()


async def _open_ledger(rt: Runtime) -> None:
    """Migrate and connect, retrying until PostgreSQL answers; then write what
    queued up meanwhile and wake every preset to catch up at once.

    Until then every ledger read raises LedgerUnavailable, so passes run as
    through an outage: claims served, no creates, Degraded, /readyz 503.
    """
    delay = 1.0
    while True:
        try:
            applied = await rt.ledger.open()
            break
        except LedgerUnavailable as error:
            log.warning(
                "ledger (PostgreSQL) unavailable; running degraded, next try in %.0fs: %s",
                delay,
                error,
            )
        except Exception as error:
            # A migration that does not fit (MigrationError), a missing privilege:
            # a person must act; keep serving claims meanwhile.
            log.error(
                "cannot open the ledger; running degraded, next try in %.0fs: %s", delay, error
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, LEDGER_RETRY_MAX_S)
    log.info("ledger open (%d migration(s) applied)", len(applied))
    metrics.ledger_up.set(1)
    if rt.presets is not None:
        for key in rt.preset_keys():
            rt.queue.add(key)
    await rt.writes.run()


def _log_error(key: PresetKey, error: BaseException) -> None:
    log.error(
        "reconcile of preset %s/%s failed: %s",
        key[0],
        key[1],
        error,
        exc_info=error,
        extra={"namespace": key[0], "preset": key[1]},
    )


def _log_claim_error(key: tuple[str, str], error: BaseException) -> None:
    log.error(
        "claim %s/%s failed: %s",
        key[0],
        key[1],
        error,
        exc_info=error,
        extra={"namespace": key[0], "claim": key[1]},
    )
    rt = _state.get("runtime")
    if rt is not None:
        rt.requeue_claim_after(key, 2.0)


async def _lead_then_work(rt: Runtime, kube: Kube, config: Settings) -> None:
    """Reconcile only while leading; watches and indexes run on every replica,
    so a stand-by takes over with a warm picture."""
    if config.leader_election:
        elector = LeaderElector(
            kube,
            config.lease_namespace or config.pod_namespace or "default",
            config.lease_name,
            f"{socket.gethostname()}-{os.getpid()}",
            lease_seconds=config.lease_seconds,
            renew_every=max(config.lease_seconds / 5, 0.5),
        )
        _electors["elector"] = elector
        _workers["elector"] = asyncio.create_task(elector.run())
        rt.may_act = elector.confident
        log.info("waiting for leadership (lease %s)", config.lease_name)
        await elector.leading.wait()

        async def step_down() -> None:
            await elector.lost.wait()
            # Another replica leads now: stop at once rather than act on a stale lease.
            os.kill(os.getpid(), signal.SIGTERM)

        _workers["step-down"] = asyncio.create_task(step_down())
    # Before any pass of this replica, on a complete picture: a take the
    # previous leader (or this process's predecessor) left undone after Bound.
    await rt.indexed.wait()
    rt.promise_takes_left()
    async with asyncio.TaskGroup() as group:
        group.create_task(_run_queue(rt))
        group.create_task(_run_claims(rt))
        group.create_task(_resync(rt))


async def _run_queue(rt: Runtime) -> None:
    # Nothing plans on a partial picture (_index_complete).
    await rt.indexed.wait()
    await rt.queue.run_workers(
        rt.settings.preset_workers, lambda key: _preset_pass(rt, key), _log_error
    )


async def _preset_pass(rt: Runtime, key: PresetKey) -> None:
    # Every record of the pass (JSON format) carries namespace and preset.
    with log_context(namespace=key[0], preset=key[1]):
        await reconcile_preset(rt, key)


async def _claim_pass(rt: Runtime, key: tuple[str, str]) -> None:
    with log_context(namespace=key[0], claim=key[1]):
        await reconcile_claim(rt, key)


async def _run_claims(rt: Runtime) -> None:
    await rt.indexed.wait()
    # Claims wait on API round trips, not CPU: many in flight keeps latency flat.
    await rt.claim_queue.run_workers(
        CLAIM_WORKERS, lambda key: _claim_pass(rt, key), _log_claim_error
    )


async def _resync(rt: Runtime) -> None:
    await rt.indexed.wait()
    period = rt.settings.resync_seconds
    tick = period / RESYNC_TICKS
    for ticks in itertools.count(1):
        await asyncio.sleep(tick)
        if ticks % RESYNC_TICKS == 0:
            rt.sweep()
            # What a fresh start's listing freed (and any burst since) goes back.
            process_memory.release_freed_heap()
            for kind, size in rt.memory_sizes().items():
                metrics.memory_entries.labels(kind).set(size)
        # A key whose last pass ended at least `period - tick` ago: the tick
        # that adds it comes less than a period after that pass.
        _resync_idle(rt.queue, rt.preset_keys(), period - tick)
        _resync_idle(rt.claim_queue, rt.claim_keys(), period - tick)


def _resync_idle(
    queue: WorkQueue[tuple[str, str]], keys: Iterable[tuple[str, str]], idle_for: float
) -> None:
    """Queue the keys that had no pass for `idle_for` seconds (nor one queued or running)."""
    recent = queue.recent(idle_for)
    for key in keys:
        if key not in recent:
            queue.add(key)


# --- indexes ----------------------------------------------------------------------------
# All handlers are `async def`: kopf runs plain functions in a thread pool,
# which for cheap handlers like these costs more than the work itself.


@kopf.index(GROUP, VERSION, "presets")
async def preset_index(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> Any:
    return {(namespace, name): PresetEntry.from_body(body)}


# --- wake-ups ---------------------------------------------------------------------------


def _index_complete(rt: Runtime, part: str) -> None:
    """One part of the picture holds its initial list: kopf's preset index
    ("kopf": kopf runs event handlers only once every index is complete, so the
    first event proves it, or a listing that found no preset), the claims, the
    workspaces or their pods ("claims", "workspaces", "pods":
    handlers/object_index.py). With all four the picture is complete, and it
    says so once, with its size: the moment a fresh replica can decide
    (docs/benchmarks.md "Restart")."""
    rt.indexes_pending.discard(part)
    if rt.indexed.is_set() or rt.indexes_pending:
        return
    rt.indexed.set()
    sizes = {
        kind: sum(len(index.get(key, ())) for key in index)
        for kind, index in (
            ("presets", rt.presets),
            ("workspaces", rt.workspaces),
            ("pods", rt.pods),
            ("claims", rt.claims),
        )
        if index is not None
    }
    log.info(
        "indexes complete: %s", ", ".join(f"{n} {kind}" for kind, n in sizes.items()), extra=sizes
    )


def _wake(namespace: str | None, preset: str | None) -> None:
    rt = _state.get("runtime")
    if rt is None or not namespace or not preset:
        return
    _index_complete(rt, "kopf")
    rt.queue.add((namespace, preset))


@kopf.on.event(GROUP, VERSION, "presets")
async def preset_event(
    type: str | None, namespace: str | None, name: str, uid: str | None, **_: Any
) -> None:
    if type == "DELETED":
        rt = _state.get("runtime")
        if rt is not None and namespace:
            # The pass that follows finds no preset and so no uid: forget by uid here.
            rt.forget_preset((namespace, name), uid)
    _wake(namespace, name)


def _wake_claim(rt: Runtime, namespace: str, preset: str, claim: str) -> None:
    """A claim changed (or, with no claim, only left a preset): it looks again at once."""
    del preset  # its preset's pass does not follow its claims' events
    if namespace and claim:
        rt.claim_queue.add((namespace, claim))


def _wake_workspace(rt: Runtime, namespace: str, preset: str, claim: str) -> None:
    """A workspace changed: as a pod's change (its claim at once, its preset
    within POD_WAKE_DELAY_S), and the claims in their coldStartGrace waiting
    for a warm one of its preset look again at once."""
    _wake_pod(rt, namespace, preset, claim)
    if namespace and preset:
        for waiter in rt.memory.warm_waiters.get((namespace, preset), ()):
            rt.claim_queue.add(waiter)


def _wake_pod(rt: Runtime, namespace: str, preset: str, claim: str) -> None:
    """A workspace pod changed: its claim looks again at once, its preset within
    POD_WAKE_DELAY_S (unless a pass is already due). Not a sign that kopf's
    indexes are complete, so nothing is marked."""
    if not namespace:
        return
    key = (namespace, preset)
    if preset and not rt.queue.waiting(key):
        rt.requeue_after(key, POD_WAKE_DELAY_S)
    if claim:
        rt.claim_queue.add((namespace, claim))
