"""What the ledger returns: frozen, plain values (no connection, no lazy loading)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from prewarm.api.claim import ClaimSource
from prewarm.api.preset import PrebuildStatus

BuildState = Literal["building", "succeeded", "failed", "disrupted"]
ClaimState = Literal["pending", "bound", "failed", "expired"]


@dataclass(frozen=True, slots=True)
class PresetRecord:
    uid: str
    namespace: str
    name: str
    template_hash: str
    generation: int
    retry_token: str | None
    reset_at: datetime | None
    status: PrebuildStatus
    created_at: datetime
    updated_at: datetime
    template_since: datetime | None = None  # when it switched to template_hash


@dataclass(frozen=True, slots=True)
class LastFailure:
    reason: str | None
    message: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class FailureState:
    """The failure policy's view of one preset at one template hash, in the current epoch.

    reset_at is the retry epoch (None before any retry): builds before it do not
    count. template_since is when the preset switched to this hash (None if it
    was recorded before the ledger tracked it, or the hash is not the preset's
    current one). A hard-limit episode starts at the later of the two:
    pass `episode_start` to mark_hard_limit_notified.
    """

    preset_uid: str
    template_hash: str
    hard_limit: int
    reset_at: datetime | None
    consecutive_failures: int
    recent_failures: int
    hard_limited: bool
    validation_failed: bool
    backoff_until: datetime | None
    last_failure: LastFailure | None
    template_since: datetime | None = None

    @property
    def episode_start(self) -> datetime | None:
        """When the current hard-limit episode began: a retry, or a switch to
        this hash (a revert to a hash hard-limited before is a new episode)."""
        known = [t for t in (self.reset_at, self.template_since) if t is not None]
        return max(known) if known else None

    def in_backoff(self, now: datetime) -> bool:
        return self.backoff_until is not None and self.backoff_until > now

    @classmethod
    def clean(cls, preset_uid: str, template_hash: str, hard_limit: int) -> FailureState:
        """The state of a preset the ledger has no failures for."""
        return cls(
            preset_uid, template_hash, max(hard_limit, 0), None, 0, 0, False, False, None, None
        )


@dataclass(frozen=True, slots=True)
class BuildRecord:
    workspace_uid: str
    preset_uid: str
    workspace_name: str | None
    template_hash: str | None
    state: BuildState
    started_at: datetime | None
    ready_at: datetime | None
    failed_at: datetime | None
    validation_error: bool
    failure_reason: str | None
    failure_message: str | None
    # Lost to its infrastructure (state 'disrupted' if never Ready; a build that
    # was Ready first stays 'succeeded': its template worked).
    disrupted_at: datetime | None = None
    disruption_reason: str | None = None
    disruption_message: str | None = None


@dataclass(frozen=True, slots=True)
class ReplayedBuild:
    """One build as a workspace's status tells it, for filling the ledger's gaps."""

    workspace_uid: str
    preset_uid: str
    workspace_name: str
    template_hash: str
    started_at: datetime
    ready_at: datetime | None = None
    failed_at: datetime | None = None
    failure_reason: str = ""
    failure_message: str = ""
    validation_error: bool = False
    disrupted_at: datetime | None = None
    disruption_reason: str = ""
    disruption_message: str = ""


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    claim_uid: str
    preset_uid: str | None
    namespace: str | None
    claim_name: str | None
    owner: str | None
    workspace_uid: str | None
    workspace_name: str | None
    source: ClaimSource | None
    state: ClaimState
    requested_at: datetime | None
    bound_at: datetime | None
    reinitialized_at: datetime | None
    failed_at: datetime | None
    failure_reason: str | None
    rebound_at: datetime | None = None
    expired_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClaimLossRecord:
    """A workspace a Bound claim lost (deleted, or its pod deleted)."""

    claim_uid: str
    workspace_name: str
    workspace_uid: str | None
    reason: str
    policy: str
    lost_at: datetime


@dataclass(frozen=True, slots=True)
class CreateRefusal:
    """A PrebuiltWorkspace create the API server refused."""

    refused_at: datetime
    http_status: int
    message: str


@dataclass(frozen=True, slots=True)
class DemandRecord:
    """One preset's claims in a window and its recent build times (queries.DEMAND)."""

    claims: int  # requested in the window
    recent: int  # of those, in the window's last quarter
    cold: int  # of those, bound to a cold build (found no warm workspace)
    builds: int  # Ready builds of the template the quantiles are from
    build_p50_s: float | None
    build_p90_s: float | None
    # The latest warm claims': claim bound -> its replacement Ready (the time
    # the slot it took stayed empty), and how many of them that is from.
    slots: int = 0
    slot_p90_s: float | None = None
