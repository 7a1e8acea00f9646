"""The operator's services: settings, connections, the work queues and the
indexes (kopf's of the presets, the operator's own of the rest), the timers,
and its memory (handlers/memory.py) by object."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from prewarm import metrics
from prewarm.api.claim import ClaimPhase
from prewarm.api.hashing import template_hash
from prewarm.api.preset import PresetSpec
from prewarm.handlers.failure_memo import FailureMemo
from prewarm.handlers.memory import ClaimKey, Expectations, Memory
from prewarm.handlers.object_index import ObjectIndex
from prewarm.handlers.watched import (
    ClaimEntry,
    PodEntry,
    PresetEntry,
    PresetKey,
    WorkspaceEntry,
)
from prewarm.k8s.client import Kube
from prewarm.k8s.core import JsonObject
from prewarm.ledger.repository import Ledger
from prewarm.ledger.writer import BackgroundWrites
from prewarm.metrics import QueueMetrics
from prewarm.planning.claims import Held
from prewarm.planning.membership import membership
from prewarm.settings import Settings
from prewarm.workqueue import WorkQueue

log = logging.getLogger("prewarm.membership")

# How long in a row a preset's pass may wait for claims in flight.
CLAIMS_FIRST_MAX_S = 1.0


def _count_dropped(what: str, error: BaseException) -> None:
    del what  # logged by the writer; a label per write would grow without bound
    metrics.ledger_writes_dropped.labels(type(error).__name__).inc()


def _background_writes() -> BackgroundWrites:
    return BackgroundWrites(on_dropped=_count_dropped)


class IndexLike(Protocol):
    """The part of kopf.Index the operator reads: key -> a collection of values."""

    def get(self, key: Any, default: Any = None) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


@dataclass
class Runtime:
    settings: Settings
    kube: Kube
    ledger: Ledger
    writes: BackgroundWrites = field(default_factory=_background_writes)
    queue: WorkQueue[PresetKey] = field(default_factory=lambda: WorkQueue(QueueMetrics("presets")))
    claim_queue: WorkQueue[ClaimKey] = field(
        default_factory=lambda: WorkQueue(QueueMetrics("claims"))
    )
    presets: IndexLike | None = None
    claims: IndexLike | None = None
    workspaces: IndexLike | None = None
    pods: IndexLike | None = None
    indexed: asyncio.Event = field(default_factory=asyncio.Event)
    # The parts whose initial list is still out ("kopf", "claims", "workspaces",
    # "pods"): `indexed` is set once none is (registrations._index_complete).
    indexes_pending: set[str] = field(
        default_factory=lambda: {"kopf", "claims", "workspaces", "pods"}
    )
    # What this process remembers between passes, by object (handlers/memory.py).
    memory: Memory = field(default_factory=Memory)
    # Presets whose last pass could not read the ledger. A set, not a flag: a
    # flag set by a pass was cleared only by the next pass, so when the presets
    # went while PostgreSQL was down, /readyz said 503 for good.
    ledger_unread: set[PresetKey] = field(default_factory=set)
    failure_memo: FailureMemo = field(default_factory=FailureMemo)
    # Whether this replica may write now (leader with a fresh lease); always
    # true without leader election.
    may_act: Callable[[], bool] = lambda: True
    # Workspaces a claim is binding and taking right now, or the pool deleting
    # (by name): the others keep off them (handlers/claim_take.py).
    reserved: set[str] = field(default_factory=set)
    # Workspaces Bound claims name whose takes have not landed (an operator
    # stopped between a claim's Bound and its take, or the take met a change),
    # by name, with the claim: kept off like `reserved` until that claim's pass.
    promised: dict[str, ClaimKey] = field(default_factory=dict)
    _timers: dict[tuple[str, PresetKey], tuple[float, asyncio.TimerHandle]] = field(
        default_factory=dict
    )
    # Each workspace's last membership verdict, by uid, with what it was decided
    # on (the index entries, by identity: kopf replaces an entry on every event,
    # and the preset's uid). A claim pass reads its preset's workspaces two or
    # three times; the verdict was 12 % of the operator's CPU in a claim burst.
    _trust: dict[str, tuple[WorkspaceEntry, PodEntry | None, str | None, bool]] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        if self.ledger is not None:  # None in unit tests that need no ledger
            self.writes.batch_with(self.ledger.batch)

    # --- reads from the indexes ------------------------------------------------------

    def preset(self, key: PresetKey) -> PresetEntry | None:
        assert self.presets is not None
        for entry in self.presets.get(key, ()):
            return entry  # type: ignore[no-any-return]
        return None

    def parsed_spec(self, entry: PresetEntry) -> tuple[PresetSpec | None, str]:
        """The preset's spec parsed (None if it does not) and its template hash,
        remembered by metadata.generation (it changes whenever the spec does):
        parsing and hashing it on every pass of every claim and preset cost more
        than a write. Callers must not change the spec they get."""
        memory = self.memory.preset_object(entry.uid)
        if memory.parsed is not None and memory.parsed[0] == entry.generation and entry.generation:
            return memory.parsed[1], memory.parsed[2]
        try:
            spec: PresetSpec | None = PresetSpec.model_validate(entry.spec)
        except ValidationError:
            spec = None
        thash = template_hash(spec) if spec else ""
        memory.parsed = (entry.generation, spec, thash)
        return spec, thash

    def preset_keys(self) -> list[PresetKey]:
        assert self.presets is not None
        return list(self.presets)

    def workspaces_of(
        self, key: PresetKey, keep: Callable[[WorkspaceEntry], bool] | None = None
    ) -> list[WorkspaceEntry]:
        """The workspaces of preset `key` the operator trusts (planning/membership.py):
        its pool (controlled by the preset, by uid) and the claimed ones (controlled
        by their claim). Foreign ones are left out, so nothing counts, tracks,
        deletes or hands them to a claim; each is logged once. With `keep`, only
        the workspaces it keeps are judged (a claim looking for its own one)."""
        assert self.workspaces is not None
        preset = self.preset(key)
        # Without its preset (deleted: the garbage collector takes its pool next)
        # no unclaimed workspace is a member, and that is not worth a warning.
        preset_uid = preset.uid if preset is not None else None
        trusted: list[WorkspaceEntry] = []
        for entry in self.workspaces.get(key, ()):
            if keep is not None and not keep(entry):
                continue
            pod = self.pod(entry.namespace, entry.name)
            known = self._trust.get(entry.uid)
            if (
                known is not None
                and known[0] is entry
                and known[1] is pod
                and known[2] == preset_uid
            ):
                if known[3]:
                    trusted.append(entry)
                continue  # a foreign one was logged when it was decided
            verdict = membership(
                preset_uid,
                entry.controller,
                entry.claim_uid,
                entry.uid,
                pod.controller_uid if pod is not None else None,
            )
            self._trust[entry.uid] = (entry, pod, preset_uid, verdict.trusted)
            if verdict.trusted:
                trusted.append(entry)
                continue
            if preset_uid is None:
                continue
            memory = self.memory.workspace(entry.uid)
            if memory.foreign != verdict.why:
                memory.foreign = verdict.why
                log.warning(
                    "ignoring PrebuiltWorkspace %s/%s of preset %s: %s",
                    entry.namespace,
                    entry.name,
                    key[1],
                    verdict.why,
                )
        return trusted

    def workspace_named(self, claim: ClaimEntry, name: str | None) -> WorkspaceEntry | None:
        """The trusted workspace `name` of the claim's preset, if there is one."""
        if not name:
            return None
        key = (claim.namespace, claim.preset)
        return next(iter(self.workspaces_of(key, lambda w: w.name == name)), None)

    def kept_off(self) -> set[str]:
        """Workspaces no claim may bind now, and the pool neither writes nor
        deletes: the ones being taken or deleted, and the ones promised to
        Bound claims whose takes have not landed."""
        return self.reserved.union(self.promised)

    def is_kept_off(self, name: str) -> bool:
        return name in self.reserved or name in self.promised

    @contextmanager
    def reserving(self, name: str) -> Iterator[None]:
        """Workspace `name` kept off while a claim binds and takes it, or the
        pool deletes it."""
        self.reserved.add(name)
        try:
            yield
        finally:
            self.reserved.discard(name)

    def promise_takes_left(self) -> None:
        """Each Bound claim whose workspace does not name it yet (a take an
        operator stopped before): its workspace is kept for it and it gets a
        pass now, before another claim sees that workspace free. Called once
        a replica may act, before its first pass, on a complete picture."""
        for key in self.claim_keys():
            claim = self.claim(key)
            if claim is None or claim.status.get("phase") != ClaimPhase.BOUND:
                continue
            ws = self.workspace_named(claim, claim.status.get("workspaceName"))
            if ws is not None and ws.held_for(claim.uid) is Held.FREE:
                self.promised[ws.name] = key
                self.claim_queue.add(key)

    def workspace_written(self, written: JsonObject, read_version: str) -> None:
        """A workspace this process wrote, as the API server answered, in the
        index before the watch shows it (ObjectIndex.wrote), if the index still
        holds the version the write was conditional on."""
        if isinstance(self.workspaces, ObjectIndex):
            self.workspaces.wrote(written, lambda held: held.resource_version == read_version)

    def claim(self, key: ClaimKey) -> ClaimEntry | None:
        assert self.claims is not None
        for entry in self.claims.get(key, ()):
            return entry  # type: ignore[no-any-return]
        return None

    def claim_keys(self) -> list[ClaimKey]:
        assert self.claims is not None
        return list(self.claims)

    def pod(self, namespace: str, name: str) -> PodEntry | None:
        """The pod of workspace `name`: the one with its label and its name (the
        operator names a workspace's pod after it; a label alone anyone can copy)."""
        assert self.pods is not None
        for entry in self.pods.get((namespace, name), ()):
            if entry.name == name:
                return entry  # type: ignore[no-any-return]
        return None

    def expectations_of(self, key: PresetKey) -> Expectations:
        found = self.memory.preset(key).expectations
        found.expire(time.monotonic())
        return found

    def global_starting(self, excluding: PresetKey) -> int:
        return sum(m.starting for k, m in self.memory.presets.items() if k != excluding)

    # --- ledger -----------------------------------------------------------------------

    def record_build(
        self, key: PresetKey, what: str, write: Callable[[], Awaitable[object]], failed: bool
    ) -> None:
        """Queue a ledger write about one of preset `key`'s builds (start or outcome).

        Goes through here, not `writes.submit`, so the remembered failure state
        of the preset is dropped when the write can change it.
        """
        self.failure_memo.build_event(key, failed)
        self.writes.submit(what, write)

    # --- scheduling -------------------------------------------------------------------

    def requeue_after(self, key: PresetKey, delay_s: float) -> None:
        """Reconcile preset `key` again after `delay_s` (the earliest of several asks wins)."""
        self._later("preset", key, delay_s, self.queue)

    def requeue_claim_after(self, key: ClaimKey, delay_s: float) -> None:
        self._later("claim", key, delay_s, self.claim_queue)

    def _later(
        self, kind: str, key: tuple[str, str], delay_s: float, queue: WorkQueue[tuple[str, str]]
    ) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + max(delay_s, 0.0)
        timer_key = (kind, key)
        current = self._timers.get(timer_key)
        if current is not None and current[0] <= due:
            return
        if current is not None:
            current[1].cancel()

        def fire() -> None:
            self._timers.pop(timer_key, None)
            queue.add(key)

        self._timers[timer_key] = (due, loop.call_at(due, fire))

    def yield_to_claims(self, key: PresetKey) -> bool:
        """Whether preset `key`'s pass should wait (and come back in 50 ms).

        While claims are in flight, a user is waiting on this event loop and
        the API server; a pass of pool bookkeeping can run a moment later. At
        most CLAIMS_FIRST_MAX_S in a row, so a stream of claims cannot starve
        the pools: once a preset has waited that long, neither its passes nor
        its creates (claims_first) give way again until the claim queue has
        been seen idle.
        """
        memory = self.memory.preset(key)
        if not self.claim_queue.busy:
            memory.yielding_to_claims_since = None
            memory.claims_first_spent = False
            return False
        if memory.claims_first_spent:
            return False
        now = time.monotonic()
        if memory.yielding_to_claims_since is None:
            memory.yielding_to_claims_since = now
        if now - memory.yielding_to_claims_since >= CLAIMS_FIRST_MAX_S:
            memory.yielding_to_claims_since = None
            memory.claims_first_spent = True
            return False
        self.requeue_after(key, 0.05)
        return True

    def claims_first(self, key: PresetKey) -> bool:
        """Whether preset `key`'s creates should still wait for claims in
        flight (the pass's PoolSnapshot.claims_busy): not once it has given
        way for CLAIMS_FIRST_MAX_S (yield_to_claims)."""
        return self.claim_queue.busy and not self.memory.preset(key).claims_first_spent

    def wake_waiting_for_global_room(self) -> None:
        for key, memory in self.memory.presets.items():
            if memory.waiting_for_global_room:
                memory.waiting_for_global_room = False
                self.queue.add(key)

    @property
    def ledger_ok(self) -> bool:
        """The last pass of every preset could read the ledger."""
        return not self.ledger_unread

    def ledger_read(self, key: PresetKey, answered: bool) -> None:
        if answered:
            self.ledger_unread.discard(key)
        else:
            self.ledger_unread.add(key)

    def forget_preset(self, key: PresetKey, uid: str | None) -> None:
        """A preset is gone: its memory, its failure memo and its timer go too."""
        self.ledger_unread.discard(key)
        memory = self.memory.presets.pop(key, None)
        self.failure_memo.forget(key)
        self._cancel_timer("preset", key)
        if uid:
            self.memory.preset_objects.pop(uid, None)
        if memory is not None and memory.starting:
            self.wake_waiting_for_global_room()  # its prebuilds in flight no longer count

    def forget_workspace(self, uid: str) -> None:
        self.memory.workspaces.pop(uid, None)
        self._trust.pop(uid, None)

    def forget_claim(self, key: ClaimKey) -> None:
        self.memory.claims.pop(key, None)
        for name in [n for n, by in self.promised.items() if by == key]:
            del self.promised[name]
        self.memory.wait_for_warm(key, None)
        self._cancel_timer("claim", key)

    def _cancel_timer(self, kind: str, key: tuple[str, str]) -> None:
        timer = self._timers.pop((kind, key), None)
        if timer is not None:
            timer[1].cancel()

    def sweep(self) -> None:
        """Forget what belongs to objects no index holds any more.

        The DELETED events forget most of it at once; this catches what a pass
        in flight at that moment wrote back afterwards (a resync runs it).
        """
        assert self.presets is not None
        assert self.workspaces is not None
        presets = set(self.preset_keys())
        workspace_uids = {e.uid for k in list(self.workspaces) for e in self.workspaces.get(k, ())}
        gone = self.memory.sweep(
            preset_keys=presets,
            preset_uids={e.uid for k in presets for e in self.presets.get(k, ())},
            workspace_uids=workspace_uids,
            claim_keys=set(self.claim_keys()),
        )
        for key in gone:
            self.failure_memo.forget(key)
        self.ledger_unread &= presets
        for uid in [u for u in self._trust if u not in workspace_uids]:
            del self._trust[uid]

    def memory_sizes(self) -> dict[str, int]:
        """Entries this process remembers, by kind: each must shrink when its objects go."""
        return {**self.memory.sizes(), "timers": len(self._timers), "verdicts": len(self._trust)}
