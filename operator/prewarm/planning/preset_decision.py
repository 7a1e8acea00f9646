"""The decisions of one preset pass, pure: two rounds of gather, decide, apply.

1. `decide_workspaces`: each unclaimed workspace's phase from its pod, and
   what to write (a new phase and its ledger outcome, a missing pod).
2. `decide_preset(snapshot, knobs) -> PresetPlan`: everything else the pass
   does: the pool's deletes and creates, the status patch or none, Events,
   the hard-limit notice, memory updates, and one requeue delay.

Two rounds, not one, because the failure policy (consecutive failures,
backoff, the hard limit) is computed by the ledger from the recorded
outcomes: the outcomes the first round observed must be recorded before the
second round reads the policy, or a pass would plan a new attempt on a
failure count that misses the failure it just saw. The handler gathers,
calls these, and applies what they return; nothing here reads or writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from prewarm.api.preset import AutoscaleStatus, PresetStatus
from prewarm.api.workspace import WorkspacePhase
from prewarm.planning.pool import Instance, waiting_reasons
from prewarm.planning.preset_pass import (
    PoolDecision,
    PoolKnobs,
    PoolSnapshot,
    Step,
    WorkspaceStep,
    WorkspaceView,
    decide_pool,
    next_wakeup,
    workspace_step,
)
from prewarm.planning.preset_status import (
    EventIntent,
    StatusInput,
    can_wait,
    compute_status,
    status_equal,
    transition_events,
)

# While a pool fills, its status's counters (and its Ready and Progressing
# conditions) move with every pod. Such a change waits this long from the first
# one not yet written, so the changes of that time go out in one write; the
# end state, and any other change, goes out at once (can_wait). A claim's
# replacement Ready within this time costs one preset status write, not two.
STATUS_DELAY_S = 2.0


@dataclass(frozen=True)
class TrackedWorkspace:
    """One of the pool's workspaces as indexed; `view` is set for the unclaimed
    live ones, whose phase the pass derives from their pod."""

    name: str
    uid: str
    resource_version: str
    instance: Instance
    view: WorkspaceView | None = None


@dataclass(frozen=True)
class PresetSnapshot:
    """Everything one pass knows, gathered before it decides anything."""

    name: str
    generation: int
    previous: PresetStatus  # the status as the watch shows it
    stored_status: Mapping[str, Any]  # the same, in wire form (what a patch compares with)
    # The pool as the planner sees it, its workspaces' phases as the first round left them.
    pool: PoolSnapshot
    # When time alone changes a workspace's phase (the first round's deadlines).
    workspace_deadlines: Sequence[datetime] = ()
    # Seconds until the schedules' wanted count may change (None: never).
    schedule_wakeup: float | None = None
    # Seconds since this process first held back a change of the status that it
    # has not written yet (None: nothing held back).
    status_held_for: float | None = None
    # Demand mode (spec.prebuilds.autoscale): what it saw and chose (pool.wanted
    # holds its count), and seconds until its next look at the ledger.
    autoscale: AutoscaleStatus | None = None
    autoscale_wakeup: float | None = None


@dataclass(frozen=True)
class WorkspaceAction:
    workspace: TrackedWorkspace
    step: WorkspaceStep


@dataclass(frozen=True)
class PresetPlan:
    pool: PoolDecision  # deletes, creates and the create-cap bookkeeping
    status: PresetStatus  # what the status says now (gauges read it)
    write_status: bool  # False: unchanged, or a change of progress held back
    hold_status: bool  # a change of progress held back: it is due STATUS_DELAY_S after the first
    events: Sequence[EventIntent]
    notify_hard_limit: bool  # log it (every pass) and post its Event once per episode
    requeue_after: float | None  # seconds; None: only watch events wake it


@dataclass(frozen=True)
class WorkspaceRound:
    actions: list[WorkspaceAction]  # the steps with something to do
    deadlines: list[datetime]  # when time alone changes a workspace's step


def decide_workspaces(
    workspaces: Sequence[TrackedWorkspace],
    now: datetime,
    readiness_timeout: timedelta,
    crashloop_restarts: int,
) -> WorkspaceRound:
    """The first round: each tracked workspace's step."""
    actions: list[WorkspaceAction] = []
    deadlines: list[datetime] = []
    for ws in workspaces:
        if ws.view is None:
            continue
        step = workspace_step(ws.view, now, readiness_timeout, crashloop_restarts)
        if step.step is not Step.KEEP or step.forget_written:
            actions.append(WorkspaceAction(ws, step))
        if step.due is not None:
            deadlines.append(step.due)
    return WorkspaceRound(actions, deadlines)


def instance_after(instance: Instance, step: WorkspaceStep, now: datetime) -> Instance:
    """The workspace as the pool sees it once its step is done (a write that
    lost its race leaves it as it was: the caller keeps the old instance)."""
    if step.phase is None or step.step not in (Step.WRITE, Step.ASSUME):
        return instance
    waiting = step.outcome.waiting if step.outcome else None
    if step.step is Step.ASSUME:
        return replace(instance, phase=step.phase)
    return replace(
        instance,
        phase=step.phase,
        waiting=waiting[0] if waiting and step.phase is WorkspacePhase.BUILDING else "",
        ready_at=instance.ready_at or (now if step.phase is WorkspacePhase.READY else None),
        failed_at=now if step.phase is WorkspacePhase.FAILED else instance.failed_at,
    )


def decide_preset(snapshot: PresetSnapshot, knobs: PoolKnobs) -> PresetPlan:
    """The second round: the pool, the status, its Events and when to come back."""
    pool = snapshot.pool
    decision = decide_pool(pool, knobs)
    status = compute_status(snapshot.previous, _status_input(snapshot, pool, decision))
    write_status, status_wait = _status_write(snapshot, status)
    failure = pool.failure
    wake = next_wakeup(pool.instances, failure, pool.ttl, snapshot.workspace_deadlines, pool.now)
    reasons = (
        decision.requeue_after,
        wake,
        status_wait,
        snapshot.schedule_wakeup,
        snapshot.autoscale_wakeup,
    )
    delays = [d for d in reasons if d is not None]
    return PresetPlan(
        pool=decision,
        status=status,
        write_status=write_status,
        hold_status=status_wait is not None,
        events=transition_events(snapshot.previous, status, failure),
        notify_hard_limit=failure.hard_limited and pool.ledger_available,
        requeue_after=min(delays) if delays else None,
    )


def _status_input(
    snapshot: PresetSnapshot, pool: PoolSnapshot, decision: PoolDecision
) -> StatusInput:
    return StatusInput(
        name=snapshot.name,
        generation=snapshot.generation,
        template_hash=pool.template_hash,
        plan=decision.plan,
        failure=pool.failure,
        paused=decision.paused_by is not None,
        paused_by=decision.paused_by,
        desired_note=decision.desired_note,
        now=pool.now,
        ledger_available=pool.ledger_available,
        quota_message=pool.quota.message if pool.quota else None,
        schedule_problem=pool.wanted.schedule_problem,
        waiting=waiting_reasons(pool.instances),
        create_refusal=pool.create_refusal.message if pool.create_refusal else None,
        autoscale=snapshot.autoscale,
    )


def _status_write(snapshot: PresetSnapshot, status: PresetStatus) -> tuple[bool, float | None]:
    """(write it now, seconds until a held-back write is due)."""
    stored = snapshot.stored_status
    if status_equal(stored, status):
        return False, None
    if not can_wait(stored, status):
        return True, None
    held = snapshot.status_held_for or 0.0
    if held >= STATUS_DELAY_S:
        return True, None
    return False, STATUS_DELAY_S - held
