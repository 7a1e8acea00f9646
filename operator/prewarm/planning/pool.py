"""The pool planner: how many prebuilds to create and which to delete, and why.

Semantics follow Coder's reconciler with its known flaw fixed: backoff, the
hard limit and validation failures stop *creates* only; deleting outdated,
expired, extraneous and old failed instances always goes on (unless paused).
Claimed instances are never touched: they belong to their claim.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prewarm.api.workspace import WorkspacePhase

STARTING_PHASES = frozenset({WorkspacePhase.PENDING, WorkspacePhase.BUILDING})


class DeleteReason(enum.StrEnum):
    OUTDATED = "Outdated"
    EXPIRED = "Expired"
    EXTRANEOUS = "Extraneous"
    FAILED_CLEANUP = "FailedCleanup"
    DISRUPTED = "Disrupted"  # lost to its infrastructure: replaced at once


class Blocker(enum.StrEnum):
    """Why the planner created fewer instances than the pool lacks."""

    PAUSED = "Paused"
    VALIDATION_FAILED = "ValidationFailed"
    HARD_LIMITED = "HardLimited"
    BACKOFF = "Backoff"
    LEDGER_UNAVAILABLE = "LedgerUnavailable"
    QUOTA_EXCEEDED = "QuotaExceeded"
    CREATE_REFUSED = "CreateRefused"
    CREATE_BUDGET = "CreateBudget"


@dataclass(frozen=True)
class Instance:
    """What the planner needs to know of one PrebuiltWorkspace."""

    name: str
    template_hash: str
    phase: WorkspacePhase
    created_at: datetime
    ready_at: datetime | None = None
    failed_at: datetime | None = None
    claimed: bool = False
    deleting: bool = False
    waiting: str = ""  # what a starting one waits for (status.waiting.reason)


def waiting_reasons(instances: Sequence[Instance]) -> dict[str, int]:
    """What the pool's starting workspaces wait for, by reason (for the status)."""
    found: dict[str, int] = {}
    for i in instances:
        if i.waiting and i.phase in STARTING_PHASES and not i.claimed and not i.deleting:
            found[i.waiting] = found.get(i.waiting, 0) + 1
    return found


@dataclass(frozen=True)
class FailureView:
    hard_limited: bool = False
    validation_failed: bool = False
    backoff_until: datetime | None = None
    # The ledger could not be read, so the policy is unknown: create nothing.
    policy_unknown: bool = False
    # A ResourceQuota refused the last pod: no failure of the template, but
    # another create would be refused too until the retry time.
    quota_exceeded: bool = False
    # The API server refused the last PrebuiltWorkspace create: held until its retry time.
    create_refused: bool = False


@dataclass(frozen=True)
class PoolInput:
    desired: int
    template_hash: str
    instances: Sequence[Instance]
    now: datetime
    ttl: timedelta | None = None
    paused: bool = False
    failure: FailureView = field(default_factory=FailureView)
    # How many creates this pass may ask for: the room left under the per-preset
    # and global in-flight caps. The glue computes it; the planner respects it.
    create_budget: int = 1_000_000
    # Failed instances kept (newest first) so people can inspect why they failed.
    keep_failed: int = 3
    # Rolling replacement (spec.rollout): how far above and below `desired` the
    # pool may go while stale warm workspaces are replaced; both resolved to counts.
    max_surge: int = 1
    max_unavailable: int = 0
    # spec.rollout.replaceCreatedBefore: warm workspaces created before it are stale.
    replace_created_before: datetime | None = None


@dataclass(frozen=True)
class Counts:
    desired: int
    running: int  # live instances of the current template: starting + ready
    ready: int  # eligible for a claim
    starting: int
    claimed: int
    failed: int
    # Stale (an older template, invalidated or past the TTL) but still warm and
    # claimable while their replacements start: part of `ready` and `running`.
    outdated: int = 0


@dataclass(frozen=True)
class Deletion:
    name: str
    reason: DeleteReason


@dataclass(frozen=True)
class PoolPlan:
    create: int
    deletions: tuple[Deletion, ...]
    counts: Counts
    blocked_by: Blocker | None = None

    def deleted(self, reason: DeleteReason) -> list[str]:
        return [d.name for d in self.deletions if d.reason is reason]


def pool_starting(instances: Sequence[Instance]) -> int:
    """How many of the pool's own instances are starting: what the create caps count.

    Claimed instances are not the pool's: a cold start in progress (or one a
    watch shows before its status) must not eat the budget the pool refills with.
    """
    return sum(1 for i in instances if not i.claimed and i.phase in STARTING_PHASES)


def _create_blocker(inp: PoolInput) -> Blocker | None:
    if inp.paused:
        return Blocker.PAUSED
    if inp.failure.validation_failed:
        return Blocker.VALIDATION_FAILED
    if inp.failure.hard_limited:
        return Blocker.HARD_LIMITED
    if inp.failure.policy_unknown:
        return Blocker.LEDGER_UNAVAILABLE
    if inp.failure.quota_exceeded:
        return Blocker.QUOTA_EXCEEDED
    if inp.failure.create_refused:
        return Blocker.CREATE_REFUSED
    if inp.failure.backoff_until is not None and inp.failure.backoff_until > inp.now:
        return Blocker.BACKOFF
    return None


def _is_expired(instance: Instance, inp: PoolInput) -> bool:
    # Counted from readiness, not creation: a slow build must not eat its own TTL.
    return (
        inp.ttl is not None
        and instance.phase is WorkspacePhase.READY
        and instance.ready_at is not None
        and instance.ready_at + inp.ttl <= inp.now
    )


def _extraneous(live: Sequence[Instance], desired: int) -> list[Deletion]:
    """Beyond the desired count: work in progress before finished work (newest
    first), then the oldest Ready ones (those are closest to expiring anyway)."""
    surplus = max(len(live) - desired, 0)
    if not surplus:
        return []
    starting = sorted(
        (i for i in live if i.phase in STARTING_PHASES),
        key=lambda i: (i.created_at, i.name),
        reverse=True,
    )
    ready = sorted(
        (i for i in live if i.phase is WorkspacePhase.READY),
        key=lambda i: (i.ready_at or i.created_at, i.name),
    )
    return [Deletion(i.name, DeleteReason.EXTRANEOUS) for i in (starting + ready)[:surplus]]


def scaled(value: int | str, total: int, round_up: bool) -> int:
    """An int-or-percent of `total` (maxSurge rounds up, maxUnavailable down, as a Deployment)."""
    if isinstance(value, int):
        return max(value, 0)
    percent = int(value.rstrip("%"))
    whole, rest = divmod(percent * total, 100)
    return whole + (1 if round_up and rest else 0)


def _stale(instance: Instance, inp: PoolInput) -> bool:
    """To be replaced: an older template, created before a manual invalidation, or expired."""
    before = inp.replace_created_before
    return (
        instance.template_hash != inp.template_hash
        or (before is not None and instance.created_at < before)
        or _is_expired(instance, inp)
    )


def _stale_order(instance: Instance, inp: PoolInput) -> tuple[int, datetime, str]:
    """Which stale warm workspace goes first: an older template, then an
    invalidated one, then an expired one; the oldest first within each."""
    rank = (
        0
        if instance.template_hash != inp.template_hash
        else (2 if _is_expired(instance, inp) else 1)
    )
    return rank, instance.ready_at or instance.created_at, instance.name


def _rolling(
    inp: PoolInput, fresh: list[Instance], stale_ready: list[Instance], desired: int
) -> tuple[list[Deletion], int]:
    """(stale warm workspaces to delete now, room left for creates under maxSurge).

    Like a Deployment: a stale warm workspace goes only while at least
    `desired - maxUnavailable` stay warm, so a rollout never empties the
    pool; creates stop at `desired + maxSurge` in all."""
    surge, unavailable = inp.max_surge, inp.max_unavailable
    if not surge and not unavailable:
        surge = 1  # a rollout must be able to move
    fresh_ready = sum(1 for i in fresh if i.phase is WorkspacePhase.READY)
    removable = fresh_ready + len(stale_ready) - max(desired - unavailable, 0)
    ordered = sorted(stale_ready, key=lambda i: _stale_order(i, inp))
    doomed = ordered[: min(max(removable, 0), len(ordered))]
    reasons = [
        DeleteReason.EXPIRED if _is_expired(i, inp) and i.template_hash == inp.template_hash
        else DeleteReason.OUTDATED
        for i in doomed
    ]  # fmt: skip
    staying = len(stale_ready) - len(doomed)
    room = desired + surge - (len(fresh) + staying)
    return [Deletion(i.name, r) for i, r in zip(doomed, reasons, strict=True)], room


def _cleanup(
    present: list[Instance], stale: set[str], inp: PoolInput
) -> tuple[list[Deletion], list[Instance]]:
    """Deletions that never wait for a replacement (disrupted ones, failed ones
    beyond those kept, stale ones that serve nobody), and the failed kept."""
    # Nothing to inspect in a disrupted one (the ledger and the Event say why).
    deletions = [
        Deletion(i.name, DeleteReason.DISRUPTED)
        for i in present
        if i.phase is WorkspacePhase.DISRUPTED
    ]
    failed = sorted(
        (
            i
            for i in present
            if i.phase is WorkspacePhase.FAILED and i.template_hash == inp.template_hash
        ),
        key=lambda i: (i.failed_at or i.created_at, i.name),
        reverse=True,
    )
    deletions += [Deletion(i.name, DeleteReason.FAILED_CLEANUP) for i in failed[inp.keep_failed :]]
    # Stale and not warm (starting, or failed under an older template): at once.
    kept_failed = {i.name for i in failed}
    deletions += [
        Deletion(i.name, DeleteReason.OUTDATED)
        for i in present
        if i.phase not in (WorkspacePhase.READY, WorkspacePhase.DISRUPTED)
        and i.name not in kept_failed
        and i.name in stale
    ]
    return deletions, failed


def plan_pool(inp: PoolInput) -> PoolPlan:
    pool = [i for i in inp.instances if not i.claimed and i.phase is not WorkspacePhase.CLAIMED]
    claimed = len(inp.instances) - len(pool)
    present = [i for i in pool if not i.deleting]
    stale = {i.name for i in present if _stale(i, inp)}
    deletions, failed = _cleanup(present, stale, inp)
    stale_ready = [i for i in present if i.phase is WorkspacePhase.READY and i.name in stale]
    fresh = [
        i
        for i in present
        if i.phase in STARTING_PHASES | {WorkspacePhase.READY} and i.name not in stale
    ]
    desired = max(inp.desired, 0)
    extraneous = _extraneous(fresh, desired)
    gone = {d.name for d in extraneous}
    fresh = [i for i in fresh if i.name not in gone]
    rolled, room = _rolling(inp, fresh, stale_ready, desired)
    deletions += rolled + extraneous  # stale ones are named first: they go anyway

    missing = max(desired - len(fresh), 0)
    blocker = _create_blocker(inp)
    create = 0 if blocker else min(missing, max(inp.create_budget, 0), max(room, 0))
    if missing and not blocker and create < min(missing, max(room, 0)):
        blocker = Blocker.CREATE_BUDGET
    if inp.paused:
        deletions = []

    deleted = {d.name for d in deletions}
    serving = [i for i in fresh + stale_ready if i.name not in deleted]
    counts = Counts(
        desired=desired,
        running=len(serving),
        ready=sum(1 for i in serving if i.phase is WorkspacePhase.READY),
        starting=sum(1 for i in serving if i.phase in STARTING_PHASES),
        claimed=claimed,
        failed=len(failed),
        outdated=sum(1 for i in serving if i.name in stale),
    )
    return PoolPlan(create=create, deletions=tuple(deletions), counts=counts, blocked_by=blocker)
