"""What the operator remembers between passes, grouped by the object it is about.

None of it is state a restart needs (that lives in Kubernetes and the
ledger): it saves round trips (what was already written) and covers the
watch's lag (what is in flight). Each group has an owner and one `forget`,
called when its object goes (DELETED events, a preset pass that finds its
preset gone) and, as a backstop, by `sweep` on every resync.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prewarm.api.preset import PresetStatus
from prewarm.api.workspace import WorkspacePhase
from prewarm.handlers.watched import PresetKey
from prewarm.planning.autoscale import Demand, Hold
from prewarm.planning.pool import Instance
from prewarm.planning.quota import QuotaHold

ClaimKey = tuple[str, str]  # (namespace, claim name)

# How long a create or delete we asked for may stay invisible in the watch
# before we stop assuming it is on its way.
EXPECTATION_TTL_S = 60.0


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
class PresetMemory:
    """One preset, by namespace and name."""

    expectations: Expectations = field(default_factory=Expectations)
    # Since when a change of its status waits to be written with the next ones
    # (time.monotonic(); None: nothing waits), for planning.preset_decision.
    status_held_since: float | None = None
    # The last status written: (the preset's resourceVersion it was written
    # over, the status as stored after the write), for passes the watch lags.
    status_written: tuple[str, Mapping[str, Any]] | None = None
    # Since when its passes wait for claims in flight (time.monotonic()).
    yielding_to_claims_since: float | None = None
    # It has waited CLAIMS_FIRST_MAX_S for claims: it gives way no more until
    # the claim queue is seen idle (a stream of claims cannot starve its refills).
    claims_first_spent: bool = False
    # Its prebuilds in flight, as its last pass counted them (the global cap).
    starting: int = 0
    # The operator-wide create cap held it back: wake it when room frees up.
    waiting_for_global_room: bool = False
    # A ResourceQuota refused its last pod: creates wait until retry_at.
    quota_hold: QuotaHold | None = None
    # The API server refused its last PrebuiltWorkspace create: creates wait until retry_at.
    create_refusal: QuotaHold | None = None
    # When its last PrebuildFailed Event went out (time.monotonic()), for their rate limit.
    failure_event_at: float | None = None
    # Demand mode: the ledger's last answer, when it was read (time.monotonic(),
    # at most one read per PREWARM_AUTOSCALE_READ_INTERVAL), and the scale-down hold.
    demand: Demand | None = None
    demand_read_at: float | None = None
    demand_question: tuple[str, str, float] | None = None  # (preset uid, hash, window s)
    autoscale_hold: Hold = field(default_factory=Hold)
    # The status its gauges were last set from (handlers.presets): a pass that
    # changes nothing sets none of them again.
    gauges_of: PresetStatus | None = None


@dataclass
class PresetObjectMemory:
    """One Preset object, by uid (a re-created namesake starts afresh)."""

    # What this process already told the ledger: (template hash, hard limit).
    recorded: tuple[str, int] | None = None
    retry_token: str | None = None
    # The API server's dry-run verdict: (template hash, rejection message or None).
    dry_run: tuple[str, str | None] | None = None
    # Hard-limit episodes (template hash, reset time) already announced.
    notified: set[tuple[str, datetime | None]] = field(default_factory=set)
    # Its spec as claims read it: (metadata.generation, the parsed spec or None
    # if it does not parse, its template hash). A spec changes only with the
    # generation; parsing and hashing it on every claim pass cost more than a write.
    parsed: tuple[int, Any, str] | None = None


@dataclass
class WorkspaceMemory:
    """One PrebuiltWorkspace, by uid."""

    # Its start and fate were written to the ledger once by this process.
    replayed: bool = False
    # A phase this process wrote that the watch has not shown yet, with the
    # resourceVersion it was written over: a pass before the watch catches up
    # does not write it again.
    phase_written: tuple[WorkspacePhase, str] | None = None
    # Why it is not trusted (planning/membership.py), as last logged; "" if it is.
    foreign: str = ""


@dataclass
class ClaimMemory:
    """One WorkspaceClaim, by namespace and name."""

    # When this process first saw it pending (time.monotonic()), for the latency metric.
    seen_at: float | None = None
    # The uid whose request this process recorded in the ledger.
    recorded_uid: str = ""
    # The workspace this process bound it to, until the watch shows Bound.
    bound_to: str | None = None
    # The pod and generation this process annotated for it: a Bound pass that
    # runs before the pod watch shows the annotations does not write them again.
    annotated: tuple[str, int] | None = None
    # Its cold workspace was created here and is not in the watch yet.
    cold_started_at: float | None = None
    # Workspaces this process saw lost while the claim was Bound (by name):
    # never followed or bound again, whatever the watch still shows.
    lost: set[str] = field(default_factory=set)

    def cold_start_pending(self) -> bool:
        return (
            self.cold_started_at is not None
            and time.monotonic() - self.cold_started_at <= EXPECTATION_TTL_S
        )


@dataclass
class Memory:
    presets: dict[PresetKey, PresetMemory] = field(default_factory=dict)
    preset_objects: dict[str, PresetObjectMemory] = field(default_factory=dict)
    workspaces: dict[str, WorkspaceMemory] = field(default_factory=dict)
    claims: dict[ClaimKey, ClaimMemory] = field(default_factory=dict)
    # Claims waiting (spec.coldStartGrace) for a warm workspace of a preset:
    # its workspaces' events wake them. Dropped when the claim stops waiting or goes.
    warm_waiters: dict[PresetKey, set[ClaimKey]] = field(default_factory=dict)

    def preset(self, key: PresetKey) -> PresetMemory:
        return self.presets.setdefault(key, PresetMemory())

    def preset_object(self, uid: str) -> PresetObjectMemory:
        return self.preset_objects.setdefault(uid, PresetObjectMemory())

    def workspace(self, uid: str) -> WorkspaceMemory:
        return self.workspaces.setdefault(uid, WorkspaceMemory())

    def claim(self, key: ClaimKey) -> ClaimMemory:
        return self.claims.setdefault(key, ClaimMemory())

    def sweep(
        self,
        preset_keys: set[PresetKey],
        preset_uids: set[str],
        workspace_uids: set[str],
        claim_keys: set[ClaimKey],
    ) -> list[PresetKey]:
        """Forget every group whose object is gone; the preset keys forgotten."""
        gone = [k for k in self.presets if k not in preset_keys]
        for key in gone:
            del self.presets[key]
        for uid in [u for u in self.preset_objects if u not in preset_uids]:
            del self.preset_objects[uid]
        for uid in [u for u in self.workspaces if u not in workspace_uids]:
            del self.workspaces[uid]
        for claim in [k for k in self.claims if k not in claim_keys]:
            del self.claims[claim]
        for preset, waiting in list(self.warm_waiters.items()):
            waiting &= claim_keys
            if not waiting:
                del self.warm_waiters[preset]
        return gone

    def wait_for_warm(self, claim: ClaimKey, preset: PresetKey | None) -> None:
        """The claim waits for `preset`'s warm workspaces, or (None) for none."""
        for key, waiting in list(self.warm_waiters.items()):
            if key != preset:
                waiting.discard(claim)
                if not waiting:
                    del self.warm_waiters[key]
        if preset is not None:
            self.warm_waiters.setdefault(preset, set()).add(claim)

    def sizes(self) -> dict[str, int]:
        return {
            "presets": len(self.presets),
            "preset_uids": len(self.preset_objects),
            "workspaces": len(self.workspaces),
            "claims": len(self.claims),
        }
