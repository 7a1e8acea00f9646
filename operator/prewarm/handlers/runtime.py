"""The operator's process-wide state: connections, the work queue, and memory
that saves round trips (what was already written, what is in flight)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from prewarm.api.workspace import WorkspacePhase
from prewarm.handlers.failure_memo import FailureMemo
from prewarm.handlers.watched import (
    ClaimEntry,
    PodEntry,
    PresetEntry,
    PresetKey,
    WorkspaceEntry,
)
from prewarm.k8s.client import Kube
from prewarm.ledger.repository import Ledger
from prewarm.ledger.writer import BackgroundWrites
from prewarm.planning.pool import Instance
from prewarm.planning.quota import QuotaHold
from prewarm.settings import Settings
from prewarm.workqueue import WorkQueue

ClaimKey = tuple[str, str]  # (namespace, claim name)

# How long a create or delete we asked for may stay invisible in the watch
# before we stop assuming it is on its way.
EXPECTATION_TTL_S = 60.0
# How long in a row a preset's pass may wait for claims in flight.
CLAIMS_FIRST_MAX_S = 1.0


class IndexLike(Protocol):
    """The part of kopf.Index the operator reads: key -> a collection of values."""

    def get(self, key: Any, default: Any = None) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


@dataclass
class Expectations:
    """Creates and deletes of one preset not yet seen in the watch.

    Without this, a reconcile that runs before the watch delivers the object
    it just created would create it again (agent-sandbox #1215).
    """

    created: dict[str, tuple[float, Instance]] = field(default_factory=dict)
    deleted: dict[str, float] = field(default_factory=dict)
    # Pods created, by name, until the pod watch shows them (the workspace
    # often shows first: without this its pod would be created twice).
    pods: dict[str, float] = field(default_factory=dict)

    def expire(self, now: float) -> None:
        for name in [n for n, (t, _) in self.created.items() if now - t > EXPECTATION_TTL_S]:
            del self.created[name]
        for name in [n for n, t in self.deleted.items() if now - t > EXPECTATION_TTL_S]:
            del self.deleted[name]
        for name in [n for n, t in self.pods.items() if now - t > EXPECTATION_TTL_S]:
            del self.pods[name]

    def observe(self, seen: Iterable[str]) -> None:
        present = set(seen)
        for name in [n for n in self.created if n in present]:
            del self.created[name]
        for name in [n for n in self.deleted if n not in present]:
            del self.deleted[name]


@dataclass
class Runtime:
    settings: Settings
    kube: Kube
    ledger: Ledger
    writes: BackgroundWrites = field(default_factory=BackgroundWrites)
    queue: WorkQueue[PresetKey] = field(default_factory=WorkQueue)
    claim_queue: WorkQueue[ClaimKey] = field(default_factory=WorkQueue)
    presets: IndexLike | None = None
    claims: IndexLike | None = None
    workspaces: IndexLike | None = None
    pods: IndexLike | None = None
    indexed: asyncio.Event = field(default_factory=asyncio.Event)
    expectations: dict[PresetKey, Expectations] = field(default_factory=dict)
    # What this process already told the ledger, to skip repeating idempotent writes.
    recorded_hash: dict[str, tuple[str, int]] = field(default_factory=dict)
    recorded_retry: dict[str, str] = field(default_factory=dict)
    # Dry-run verdicts by preset uid: (template hash, rejection message or None).
    validated: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    notified: set[tuple[str, str, Any]] = field(default_factory=set)
    replayed_workspaces: set[str] = field(
        default_factory=set
    )  # workspace uids written to the ledger
    ledger_ok: bool = True  # the last pass could read the ledger
    failure_memo: FailureMemo = field(default_factory=FailureMemo)
    # Whether this replica may write now (leader with a fresh lease); always
    # true without leader election.
    may_act: Callable[[], bool] = lambda: True
    starting: dict[PresetKey, int] = field(default_factory=dict)
    # Presets whose passes wait for claims in flight, since when (time.monotonic()).
    yielding_to_claims_since: dict[PresetKey, float] = field(default_factory=dict)
    # When each preset's status was last written (time.monotonic()).
    status_written: dict[PresetKey, float] = field(default_factory=dict)
    # Presets the operator-wide create cap held back, woken when room frees up.
    waiting_for_global_room: set[PresetKey] = field(default_factory=set)
    # Workspace phases this process wrote that the watch has not shown yet
    # (uid -> (phase, the resourceVersion it was written over)), so a pass
    # that runs before the watch catches up does not write them again.
    phase_written: dict[str, tuple[WorkspacePhase, str]] = field(default_factory=dict)
    # Presets whose last pod a ResourceQuota refused: creates wait until retry_at.
    quota_holds: dict[PresetKey, QuotaHold] = field(default_factory=dict)
    # Claims: when this process first saw each (for the latency metric), which
    # it recorded in the ledger, and workspaces a claim is trying to take now.
    claim_seen: dict[ClaimKey, float] = field(default_factory=dict)
    claims_recorded: set[str] = field(default_factory=set)
    reserved: set[str] = field(default_factory=set)
    # Claims this process bound whose Bound status the watch has not shown yet.
    bound: dict[ClaimKey, str] = field(default_factory=dict)
    # Claims whose cold workspace this process created and the watch has not
    # shown yet (time.monotonic()): such a claim takes nothing else meanwhile.
    cold_started: dict[ClaimKey, float] = field(default_factory=dict)
    _timers: dict[tuple[str, PresetKey], tuple[float, asyncio.TimerHandle]] = field(
        default_factory=dict
    )

    # --- reads from the kopf indexes -------------------------------------------------

    def preset(self, key: PresetKey) -> PresetEntry | None:
        assert self.presets is not None
        for entry in self.presets.get(key, ()):
            return entry  # type: ignore[no-any-return]
        return None

    def preset_keys(self) -> list[PresetKey]:
        assert self.presets is not None
        return list(self.presets)

    def workspaces_of(self, key: PresetKey) -> list[WorkspaceEntry]:
        assert self.workspaces is not None
        return list(self.workspaces.get(key, ()))

    def claim(self, key: ClaimKey) -> ClaimEntry | None:
        assert self.claims is not None
        for entry in self.claims.get(key, ()):
            return entry  # type: ignore[no-any-return]
        return None

    def claim_keys(self) -> list[ClaimKey]:
        assert self.claims is not None
        return list(self.claims)

    def pod(self, namespace: str, name: str) -> PodEntry | None:
        assert self.pods is not None
        for entry in self.pods.get((namespace, name), ()):
            return entry  # type: ignore[no-any-return]
        return None

    def expectations_of(self, key: PresetKey) -> Expectations:
        found = self.expectations.setdefault(key, Expectations())
        found.expire(time.monotonic())
        return found

    def cold_start_pending(self, key: ClaimKey) -> bool:
        """Whether claim `key`'s cold workspace was created here and is not in the watch yet."""
        since = self.cold_started.get(key)
        if since is None:
            return False
        if time.monotonic() - since > EXPECTATION_TTL_S:
            del self.cold_started[key]
            return False
        return True

    def global_starting(self, excluding: PresetKey) -> int:
        return sum(n for k, n in self.starting.items() if k != excluding)

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
        the pools.
        """
        if not self.claim_queue.busy:
            self.yielding_to_claims_since.pop(key, None)
            return False
        now = time.monotonic()
        since = self.yielding_to_claims_since.setdefault(key, now)
        if now - since >= CLAIMS_FIRST_MAX_S:
            self.yielding_to_claims_since.pop(key, None)
            return False
        self.requeue_after(key, 0.05)
        return True

    def wake_waiting_for_global_room(self) -> None:
        for key in self.waiting_for_global_room:
            self.queue.add(key)
        self.waiting_for_global_room.clear()

    def forget(self, key: PresetKey, uid: str | None) -> None:
        self.expectations.pop(key, None)
        self.waiting_for_global_room.discard(key)
        self.yielding_to_claims_since.pop(key, None)
        self.status_written.pop(key, None)
        self.failure_memo.forget(key)
        self.quota_holds.pop(key, None)
        if self.starting.pop(key, 0):
            self.wake_waiting_for_global_room()
        timer = self._timers.pop(("preset", key), None)
        if timer is not None:
            timer[1].cancel()
        if uid:
            self.forget_preset_uid(uid)

    def forget_preset_uid(self, uid: str) -> None:
        """What was remembered of one Preset object (a re-created namesake has another uid)."""
        self.recorded_hash.pop(uid, None)
        self.recorded_retry.pop(uid, None)
        self.validated.pop(uid, None)
        self.notified = {mark for mark in self.notified if mark[0] != uid}

    def forget_workspace(self, uid: str) -> None:
        """A workspace is gone from the cluster: what this process remembers of it goes too."""
        self.replayed_workspaces.discard(uid)
        self.phase_written.pop(uid, None)

    def forget_claim(self, key: ClaimKey, uid: str) -> None:
        """A claim is gone from the cluster: what this process remembers of it goes too."""
        self.claim_seen.pop(key, None)
        self.bound.pop(key, None)
        self.cold_started.pop(key, None)
        self.claims_recorded.discard(uid)
        timer = self._timers.pop(("claim", key), None)
        if timer is not None:
            timer[1].cancel()

    def sweep(self) -> None:
        """Forget what belongs to objects no index holds any more.

        The DELETED events forget most of it at once; this catches what a pass
        in flight at that moment wrote back afterwards (a resync runs it).
        """
        assert self.presets is not None
        assert self.workspaces is not None
        assert self.claims is not None
        presets = set(self.preset_keys())
        preset_uids = {e.uid for k in presets for e in self.presets.get(k, ())}
        for key in {*self.expectations, *self.status_written, *self.starting, *self.quota_holds}:
            if key not in presets:
                self.forget(key, None)
        for uid in {*self.recorded_hash, *self.recorded_retry, *self.validated}:
            if uid not in preset_uids:
                self.forget_preset_uid(uid)
        self.notified = {mark for mark in self.notified if mark[0] in preset_uids}
        workspace_uids = {e.uid for k in list(self.workspaces) for e in self.workspaces.get(k, ())}
        for uid in (self.replayed_workspaces | self.phase_written.keys()) - workspace_uids:
            self.forget_workspace(uid)
        claims = set(self.claim_keys())
        claim_uids = {e.uid for k in claims for e in self.claims.get(k, ())}
        for key in {*self.claim_seen, *self.bound, *self.cold_started} - claims:
            self.forget_claim(key, "")
        self.claims_recorded &= claim_uids

    def memory_sizes(self) -> dict[str, int]:
        """Entries this process remembers, by kind: each must shrink when its objects go."""
        return {
            "presets": len(
                self.expectations.keys()
                | self.status_written.keys()
                | self.starting.keys()
                | self.quota_holds.keys()
            ),
            "preset_uids": len(
                self.recorded_hash.keys() | self.recorded_retry.keys() | self.validated.keys()
            )
            + len(self.notified),
            "workspaces": len(self.replayed_workspaces | self.phase_written.keys()),
            "claims": len(self.claim_seen.keys() | self.bound.keys() | self.cold_started.keys())
            + len(self.claims_recorded),
            "timers": len(self._timers),
        }
