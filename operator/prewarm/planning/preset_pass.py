"""The decisions of one preset pass that the pool planner does not make: pure.

What the pool may create this pass (caps, slow start, claims first), who
paused it, how many it wants (schedules, the operator's cap), what stands in
for the failure policy while the ledger is down, whether a quota hold is
over, and when time alone changes the answer (the next wake-up). The handler
gathers the inputs, calls `decide_pool`, and applies what it returns.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prewarm.api.preset import PrebuildStatus, PresetStatus, Rollout
from prewarm.api.reasons import DisruptionReason
from prewarm.api.workspace import (
    PrebuiltWorkspaceStatus,
    WorkspaceFailure,
    WorkspacePhase,
    WorkspaceWaiting,
)
from prewarm.planning.failures import Outcome, PodView, Verdict, classify
from prewarm.planning.pool import (
    Blocker,
    FailureView,
    Instance,
    PoolInput,
    PoolPlan,
    plan_pool,
    pool_starting,
    scaled,
)
from prewarm.planning.preset_status import FailureSummary
from prewarm.planning.quota import QuotaHold
from prewarm.planning.schedule import DesiredCount

# Most pods are Ready within seconds of their creation: a workspace goes from
# Pending straight to Ready (one status write, not two) unless its pod is still
# not Ready after this long, when it shows Building.
BUILDING_AFTER = timedelta(seconds=5)
# A pass that deferred its creates to claims in flight comes back this soon.
CLAIMS_FIRST_RETRY_S = 0.2
# A pass without the ledger tries again this soon.
LEDGER_DOWN_RETRY_S = 5.0
# At most one PrebuildFailed Event per preset this often: a broken template
# fails a few builds at once (slow start), and the hard limit's own Event follows.
FAILURE_EVENT_INTERVAL_S = 60.0


@dataclass(frozen=True)
class PoolKnobs:
    """The operator's settings that bound a pool, and the preset's hard limit."""

    max_instances_per_preset: int
    max_creates_per_preset: int
    max_creates_global: int
    hard_limit: int
    operator_paused: bool = False
    failed_to_keep: int = 3  # the preset's failurePolicy.failedToKeep, else the operator's


@dataclass(frozen=True)
class PoolSnapshot:
    """What a pass knows when it plans the pool."""

    template_hash: str
    instances: Sequence[Instance]
    wanted: DesiredCount
    failure: FailureSummary
    now: datetime
    ttl: timedelta | None = None
    paused_by_annotation: bool = False
    ledger_available: bool = True
    quota: QuotaHold | None = None
    # Prebuilds other presets have in flight (the operator-wide cap is shared).
    others_starting: int = 0
    # Claims are being handled now: a refill can wait a moment, a user cannot.
    claims_busy: bool = False
    rollout: Rollout = field(default_factory=Rollout)  # spec.rollout
    # The API server refused the last PrebuiltWorkspace create (not a build: no pod).
    create_refusal: QuotaHold | None = None


@dataclass(frozen=True)
class PoolDecision:
    plan: PoolPlan
    creating: int  # what the pass creates now (the plan's, unless claims go first)
    desired_note: str | None  # a schedule problem or the operator's cap, for the status
    paused_by: str | None  # "operator" | "annotation" | None
    waiting_for_global_room: bool  # the operator-wide cap held it back: wake it when room frees up
    keep_quota_hold: bool  # False: nothing waits for the quota any more, drop the hold
    requeue_after: float | None  # seconds; None: only events and deadlines wake it


def paused_by(operator_paused: bool, annotation_paused: bool) -> str | None:
    if operator_paused:
        return "operator"
    return "annotation" if annotation_paused else None


def desired_count(wanted: DesiredCount, cap: int) -> tuple[int, str | None]:
    """The count to keep warm and the note that explains it (a schedule problem or the cap)."""
    if wanted.instances > cap:
        return cap, f"asked for {wanted.instances}, capped at {cap} by the operator"
    return wanted.instances, wanted.problem


def create_budget(snapshot: PoolSnapshot, knobs: PoolKnobs, starting_here: int) -> tuple[int, int]:
    """(creates this pass may ask for, room left under the operator-wide cap)."""
    global_room = knobs.max_creates_global - snapshot.others_starting - starting_here
    budget = min(knobs.max_creates_per_preset - starting_here, global_room)
    proven = any(
        i.template_hash == snapshot.template_hash
        and i.phase in (WorkspacePhase.READY, WorkspacePhase.CLAIMED)
        for i in snapshot.instances
    )
    if knobs.hard_limit and not proven:
        # Slow start: until one prebuild of this template has worked, never have
        # more attempts in flight than the hard limit has left, so a broken
        # template costs at most `hardLimit` attempts however large its pool.
        left = knobs.hard_limit - snapshot.failure.consecutive_failures - starting_here
        budget = min(budget, left)
    return budget, global_room


def decide_pool(snapshot: PoolSnapshot, knobs: PoolKnobs) -> PoolDecision:
    now = snapshot.now
    desired, note = desired_count(snapshot.wanted, knobs.max_instances_per_preset)
    pauser = paused_by(knobs.operator_paused, snapshot.paused_by_annotation)
    starting_here = pool_starting(snapshot.instances)
    budget, global_room = create_budget(snapshot, knobs, starting_here)
    quota = snapshot.quota
    failure = snapshot.failure
    plan = plan_pool(
        PoolInput(
            desired=desired,
            template_hash=snapshot.template_hash,
            instances=snapshot.instances,
            now=now,
            ttl=snapshot.ttl,
            paused=pauser is not None,
            failure=FailureView(
                hard_limited=failure.hard_limited,
                validation_failed=failure.validation_failed,
                backoff_until=failure.backoff_until,
                policy_unknown=not snapshot.ledger_available,
                quota_exceeded=quota is not None and quota.active(now),
                create_refused=snapshot.create_refusal is not None
                and snapshot.create_refusal.active(now),
            ),
            create_budget=budget,
            keep_failed=knobs.failed_to_keep,
            max_surge=scaled(snapshot.rollout.max_surge, desired, round_up=True),
            max_unavailable=scaled(snapshot.rollout.max_unavailable, desired, round_up=False),
            replace_created_before=snapshot.rollout.replace_created_before,
        )
    )
    creating = 0 if snapshot.claims_busy else plan.create
    delays = [LEDGER_DOWN_RETRY_S] if not snapshot.ledger_available else []
    if plan.create and snapshot.claims_busy:
        delays.append(CLAIMS_FIRST_RETRY_S)
    for hold in (quota, snapshot.create_refusal):
        if hold is not None and hold.active(now):
            delays.append((hold.retry_at - now).total_seconds())
    return PoolDecision(
        plan=plan,
        creating=creating,
        desired_note=note,
        paused_by=pauser,
        waiting_for_global_room=plan.blocked_by is Blocker.CREATE_BUDGET
        and plan.create >= global_room,
        keep_quota_hold=quota is not None
        and (quota.active(now) or bool(starting_here) or bool(plan.create)),
        requeue_after=min(delays) if delays else None,
    )


def ledger_down_failure(
    previous: PresetStatus, hard_limit: int, dry_run_message: str | None
) -> FailureSummary:
    """Without the ledger the policy cannot be evaluated: keep what the status
    last said (the plan creates nothing meanwhile)."""
    return FailureSummary(
        hard_limited=previous.prebuild_status is PrebuildStatus.HARD_LIMITED,
        hard_limit=hard_limit,
        consecutive_failures=0,
        validation_failed=dry_run_message is not None
        or previous.prebuild_status is PrebuildStatus.VALIDATION_FAILED,
        validation_message=dry_run_message,
        backoff_until=previous.backoff_until,
        last_failure=previous.last_failure,
    )


def next_wakeup(
    instances: Sequence[Instance],
    failure: FailureSummary,
    ttl: timedelta | None,
    workspace_deadlines: Sequence[datetime],
    now: datetime,
) -> float | None:
    """Seconds until time alone changes the answer (backoff ends, a workspace's
    deadline passes (see `workspace_step`), a TTL passes, a Pending workspace
    should show Building); None if nothing is due. Everything else arrives as
    a watch event."""
    deadlines: list[datetime] = list(workspace_deadlines)
    if failure.backoff_until and failure.backoff_until > now:
        deadlines.append(failure.backoff_until)
    for i in instances:
        if i.claimed or i.deleting:
            continue
        if i.phase is WorkspacePhase.PENDING:
            deadlines.append(i.created_at + BUILDING_AFTER)
        if ttl and i.phase is WorkspacePhase.READY and i.ready_at:
            deadlines.append(i.ready_at + ttl)
    future = [d for d in deadlines if d > now]
    # Half a second late, so the deadline has surely passed when the pass runs.
    return (min(future) - now).total_seconds() + 0.5 if future else None


class Step(enum.StrEnum):
    """What a pass does about one of the pool's workspaces."""

    KEEP = "Keep"  # nothing to write
    CREATE_POD = "CreatePod"  # its pod was never created (a crash between the two creates)
    ASSUME = "Assume"  # written by an earlier pass on this version; the watch lags behind
    WRITE = "Write"  # a new phase: write it (conditional on the version read) and the ledger


@dataclass(frozen=True)
class WorkspaceStep:
    step: Step
    outcome: Outcome | None = None
    phase: WorkspacePhase | None = None
    # The phase this process wrote has reached the watch: stop remembering it.
    forget_written: bool = False
    due: datetime | None = None  # when time alone changes the answer (a deadline)


@dataclass(frozen=True)
class WorkspaceView:
    """One pool workspace as the pass sees it, with its pod (None: none in the watch)."""

    phase: WorkspacePhase
    created_at: datetime
    current: bool  # of the preset's current template
    pod: PodView | None
    pod_deleting: bool = False
    pod_expected: bool = False  # created (or asked for) by this process, not in the watch yet
    quota_held: bool = False  # a full quota holds the preset's pods until a retry
    written: WorkspacePhase | None = None  # what this process wrote over this version
    was_ready: bool = False  # it was Ready before: losing readiness now is a disruption
    waiting: str = ""  # the waiting reason its status shows


_PHASE_OF = {
    Verdict.BUILDING: WorkspacePhase.BUILDING,
    Verdict.READY: WorkspacePhase.READY,
    Verdict.FAILED: WorkspacePhase.FAILED,
    Verdict.DISRUPTED: WorkspacePhase.DISRUPTED,
}
# Where a workspace's story ends: nothing its pod does changes it any more.
FINAL_PHASES = frozenset({WorkspacePhase.FAILED, WorkspacePhase.DISRUPTED})


def workspace_step(
    ws: WorkspaceView, now: datetime, readiness_timeout: timedelta, crashloop_restarts: int
) -> WorkspaceStep:
    """The workspace's phase derived from its pod, and what to do about it."""
    if ws.phase in FINAL_PHASES:
        return WorkspaceStep(Step.KEEP)
    if ws.pod is None and ws.phase is WorkspacePhase.PENDING:
        if ws.quota_held or ws.pod_expected or not ws.current:
            return WorkspaceStep(Step.KEEP)
        return WorkspaceStep(Step.CREATE_POD)
    if ws.pod is None:
        # Someone or something else deleted it: not the workspace's own fault.
        outcome = Outcome(
            Verdict.DISRUPTED, DisruptionReason.POD_DELETED, "the workspace's pod is gone"
        )
    elif ws.pod_deleting:
        outcome = Outcome(
            Verdict.DISRUPTED, DisruptionReason.POD_DELETED, "the workspace's pod is being deleted"
        )
    else:
        outcome = classify(
            ws.pod, now, readiness_timeout, crashloop_restarts, was_ready=ws.was_ready
        )
    phase = _PHASE_OF[outcome.verdict]
    due = outcome.due
    building = phase is WorkspacePhase.BUILDING
    if building and not ws.was_ready and now - ws.created_at < BUILDING_AFTER:
        # next_wakeup comes back when BUILDING_AFTER has passed
        return WorkspaceStep(Step.KEEP, due=due)
    waiting = outcome.waiting[0] if outcome.waiting else ""
    if phase is ws.phase and (not building or waiting == ws.waiting):
        return WorkspaceStep(Step.KEEP, forget_written=True, due=due)
    if ws.written is phase:
        return WorkspaceStep(Step.ASSUME, phase=phase, due=due)
    return WorkspaceStep(Step.WRITE, outcome, phase, due=due)


def failure_event_due(last_at: float | None, now: float) -> bool:
    """Whether a failed build gets its own Warning Event (monotonic seconds);
    the ones in between are in the log, the ledger and the metric."""
    return last_at is None or now - last_at >= FAILURE_EVENT_INTERVAL_S


def outcome_status(
    outcome: Outcome, pod_name: str, now: datetime, first_ready: bool
) -> PrebuiltWorkspaceStatus:
    """The workspace status that says `outcome` (readyAt only the first time:
    the TTL counts from there)."""
    verdict = outcome.verdict
    ended = verdict in (Verdict.FAILED, Verdict.DISRUPTED)
    waiting = outcome.waiting if verdict is Verdict.BUILDING else None
    return PrebuiltWorkspaceStatus(
        phase=_PHASE_OF[verdict],
        pod_name=pod_name,
        ready_at=now if verdict is Verdict.READY and first_ready else None,
        failed_at=now if verdict is Verdict.FAILED else None,
        failure=WorkspaceFailure(reason=str(outcome.reason), message=outcome.message)
        if ended
        else None,
        waiting=WorkspaceWaiting(reason=waiting[0], message=waiting[1]) if waiting else None,
    )
