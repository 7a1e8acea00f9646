"""One reconcile pass of one preset: gather, plan, apply.

Runs from the work queue, so one preset is never reconciled twice at once.
Reads come from kopf indexes (no API lists) and the ledger; writes are the
plan's creates and deletes, workspace status transitions, and a preset status
patch only when something changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from prewarm import metrics
from prewarm.api import reasons
from prewarm.api.conditions import is_true
from prewarm.api.constants import (
    ANNOTATION_PAUSED,
    ANNOTATION_RETRY,
    API_VERSION,
    KIND_PRESET,
)
from prewarm.api.preset import (
    AutoscaleStatus,
    LastFailure,
    PrebuildStatus,
    PresetSpec,
    PresetStatus,
)
from prewarm.api.reasons import FailureReason
from prewarm.api.timestamps import rfc3339
from prewarm.api.workspace import (
    WorkspacePhase,
    workspace_status_patch,
)
from prewarm.handlers.memory import Expectations, PresetMemory
from prewarm.handlers.runtime import Runtime
from prewarm.handlers.watched import PresetEntry, PresetKey, WorkspaceEntry
from prewarm.handlers.workspaces import ensure_pod, record_disruption
from prewarm.k8s.client import ApiError
from prewarm.k8s.events import post_event
from prewarm.ledger.models import ReplayedBuild
from prewarm.ledger.repository import LedgerUnavailable
from prewarm.planning.autoscale import (
    AutoscaleReason,
    Demand,
    autoscaled_count,
    demand_wakeup,
    next_read_in,
)
from prewarm.planning.failures import Outcome, Verdict
from prewarm.planning.pool import (
    Instance,
)
from prewarm.planning.preset_decision import (
    PresetPlan,
    PresetSnapshot,
    TrackedWorkspace,
    WorkspaceAction,
    decide_preset,
    decide_workspaces,
    instance_after,
)
from prewarm.planning.preset_pass import (
    PoolDecision,
    PoolKnobs,
    PoolSnapshot,
    Step,
    WorkspaceView,
    failure_event_due,
    ledger_down_failure,
    outcome_status,
)
from prewarm.planning.preset_status import (
    EventIntent,
    FailureSummary,
    invalid_spec_status,
    status_as_known,
    status_patch,
)
from prewarm.planning.quota import refused
from prewarm.planning.render import render_pod, render_workspace
from prewarm.planning.schedule import DesiredCount, Schedule, desired_instances, schedule_wakeup

log = logging.getLogger("prewarm.presets")

# How long a pass waits for queued ledger writes before it calls the ledger down.
LEDGER_DRAIN_TIMEOUT_S = 3.0


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _event(rt: Runtime, preset: PresetEntry, intent: EventIntent) -> None:
    await post_event(
        rt.kube,
        api_version=API_VERSION,
        kind=KIND_PRESET,
        namespace=preset.namespace,
        name=preset.name,
        uid=preset.uid,
        type_="Warning" if intent.type == "Warning" else "Normal",
        reason=intent.reason,
        message=intent.message,
        once_key=intent.once_key,
    )


async def reconcile_preset(rt: Runtime, key: PresetKey) -> None:
    preset = rt.preset(key)
    if preset is None or preset.deleting:
        # Its unclaimed workspaces go with it (ownerReferences); forget it here.
        metrics.forget_preset(*key)
        rt.forget_preset(key, preset.uid if preset else None)
        return
    if not rt.may_act():
        # The lease is not fresh: hold writes back, and forget what the ledger
        # said (the replica acting meanwhile may record outcomes).
        rt.failure_memo.clear()
        rt.requeue_after(key, 1.0)
        return
    if rt.yield_to_claims(key):
        return
    started = time.perf_counter()
    try:
        await _reconcile(rt, key, preset)
    except Exception:
        metrics.reconcile_errors.labels(*key).inc()
        rt.requeue_after(key, 5.0)
        raise
    finally:
        metrics.reconcile_duration.observe(time.perf_counter() - started)


@dataclass(frozen=True)
class _Pass:
    """What one pass knows of its preset before it plans the pool."""

    key: PresetKey
    preset: PresetEntry
    spec: PresetSpec
    previous: PresetStatus
    known_status: Mapping[str, Any]  # `previous` in wire form
    template_hash: str
    hard_limit: int
    readiness_timeout: timedelta
    now: datetime


async def _reconcile(rt: Runtime, key: PresetKey, preset: PresetEntry) -> None:
    """Two rounds of gather, decide (planning/preset_decision), apply: first the
    workspaces' phases and outcomes, then (the ledger having them) the pool,
    the status and its Events."""
    now = _now()
    memory = rt.memory.preset(key)
    known = status_as_known(preset.resource_version, preset.status, memory.status_written)
    if known is preset.status:
        memory.status_written = None  # the watch shows that write (or a later change)
    previous = PresetStatus.model_validate(known)
    spec, thash = rt.parsed_spec(preset)
    if spec is None:
        await _invalid_spec(rt, preset, known, previous, now)
        return
    policy = spec.failure_policy
    p = _Pass(
        key=key,
        preset=preset,
        spec=spec,
        previous=previous,
        known_status=known,
        template_hash=thash,
        hard_limit=rt.settings.hard_limit if policy.hard_limit is None else policy.hard_limit,
        readiness_timeout=policy.readiness_timeout or rt.settings.readiness_timeout,
        now=now,
    )
    try:
        retried = await _ledger_bookkeeping(rt, preset, p.template_hash, p.hard_limit)
        ledger_ok = True
    except LedgerUnavailable as error:
        log.warning("ledger unavailable for preset %s/%s: %s", *key, error)
        retried, ledger_ok = False, False
    dry_run_message = await _validate_template(rt, preset, spec, p.template_hash, previous, retried)
    tracked, by_name = _gather_workspaces(rt, p, ledger_ok)
    first = decide_workspaces(tracked, now, p.readiness_timeout, rt.settings.crashloop_restarts)
    instances = await _apply_workspace_actions(rt, p, tracked, first.actions, by_name)
    failure, episode_start, ledger_ok = await _gather_failure(rt, p, ledger_ok, dry_run_message)
    demand = await _gather_demand(rt, p, ledger_ok)
    snapshot = _snapshot(rt, p, instances, failure, ledger_ok, first.deadlines, demand)
    plan = decide_preset(snapshot, _knobs(rt, p.hard_limit, policy.failed_to_keep))
    await _apply_pool(rt, p, plan.pool, by_name)
    await _apply_status(rt, p, plan, failure, episode_start)
    if plan.requeue_after is not None:
        rt.requeue_after(key, plan.requeue_after)


async def _invalid_spec(
    rt: Runtime,
    preset: PresetEntry,
    known: Mapping[str, Any],
    previous: PresetStatus,
    now: datetime,
) -> None:
    """The CRD schema should have stopped this; say so rather than loop on it."""
    try:
        PresetSpec.model_validate(preset.spec)
        return  # parses after all (a newer generation than the memory's): the next pass
    except ValidationError as error:
        message = str(error)
    status = invalid_spec_status(known, previous, message, preset.generation, now)
    if status is not None:
        await rt.kube.patch_preset_status(
            preset.namespace, preset.name, {"status": status_patch(status)}
        )


def _autoscaled(
    rt: Runtime, p: _Pass, demand: Demand | None
) -> tuple[DesiredCount, AutoscaleStatus, float | None]:
    """Demand mode's count, its status and when the next ledger read is due."""
    spec, memory = p.spec.prebuilds, rt.memory.preset(p.key)
    assert spec.autoscale is not None
    counted = autoscaled_count(
        spec, spec.autoscale, demand, p.previous, memory.autoscale_hold, p.now
    )
    # The hold is this pass's to keep: the decision is applied as it is made.
    memory.autoscale_hold = counted.decision.hold
    interval = rt.settings.autoscale_read_interval.total_seconds()
    wakeup = demand_wakeup(memory.demand_read_at, time.monotonic(), interval, demand is not None)
    return counted.wanted, counted.status, wakeup


def _snapshot(
    rt: Runtime,
    p: _Pass,
    instances: list[Instance],
    failure: FailureSummary,
    ledger_ok: bool,
    deadlines: list[datetime],
    demand: Demand | None = None,
) -> PresetSnapshot:
    spec = p.spec
    memory = rt.memory.preset(p.key)
    held_since = memory.status_held_since
    wanted = desired_instances(
        spec.prebuilds.instances,
        [Schedule(x.cron, x.instances) for x in spec.prebuilds.schedules],
        spec.prebuilds.timezone,
        p.now,
    )
    autoscale, autoscale_wakeup = None, None
    if spec.prebuilds.autoscale is not None:
        wanted, autoscale, autoscale_wakeup = _autoscaled(rt, p, demand)
    return PresetSnapshot(
        name=p.preset.name,
        generation=p.preset.generation,
        previous=p.previous,
        stored_status=p.known_status,
        pool=PoolSnapshot(
            template_hash=p.template_hash,
            instances=instances,
            wanted=wanted,
            failure=failure,
            now=p.now,
            ttl=spec.prebuilds.ttl,
            paused_by_annotation=p.preset.annotations.get(ANNOTATION_PAUSED) == "true",
            ledger_available=ledger_ok,
            quota=memory.quota_hold,
            others_starting=rt.global_starting(p.key),
            claims_busy=rt.claims_first(p.key),
            rollout=spec.rollout,
            create_refusal=memory.create_refusal,
        ),
        workspace_deadlines=deadlines,
        schedule_wakeup=schedule_wakeup(spec.prebuilds, p.now),
        status_held_for=time.monotonic() - held_since if held_since is not None else None,
        autoscale=autoscale,
        autoscale_wakeup=autoscale_wakeup,
    )


async def _gather_demand(rt: Runtime, p: _Pass, ledger_ok: bool) -> Demand | None:
    """Demand mode's view of the ledger: one query per preset, at most once per
    PREWARM_AUTOSCALE_READ_INTERVAL (or when the template or window changes);
    passes in between reuse the answer. None without the ledger."""
    autoscale = p.spec.prebuilds.autoscale
    if autoscale is None or not ledger_ok:
        return None
    memory = rt.memory.preset(p.key)
    interval = rt.settings.autoscale_read_interval.total_seconds()
    question = (p.preset.uid, p.template_hash, autoscale.window.total_seconds())
    fresh = next_read_in(memory.demand_read_at, time.monotonic(), interval) > 0
    if memory.demand is not None and memory.demand_question == question and fresh:
        return memory.demand
    read_at = datetime.now(UTC)
    try:
        record = await rt.ledger.demand(
            p.preset.uid, p.template_hash, window=autoscale.window, now=read_at
        )
    except (LedgerUnavailable, TimeoutError) as error:
        log.warning("ledger unavailable for preset %s/%s: %s", *p.key, error)
        return None
    memory.demand = Demand(
        arrivals=record.claims,
        arrivals_recent=record.recent,
        misses=record.cold,
        build_samples=record.builds,
        build_p50_s=record.build_p50_s,
        build_p90_s=record.build_p90_s,
        read_at=read_at.replace(microsecond=0),
        slot_samples=record.slots,
        slot_p90_s=record.slot_p90_s,
    )
    memory.demand_read_at = time.monotonic()
    memory.demand_question = question
    return memory.demand


def _knobs(rt: Runtime, hard_limit: int, failed_to_keep: int | None) -> PoolKnobs:
    s = rt.settings
    return PoolKnobs(
        max_instances_per_preset=s.max_instances_per_preset,
        max_creates_per_preset=s.max_creates_per_preset,
        max_creates_global=s.max_creates_global,
        hard_limit=hard_limit,
        operator_paused=s.paused,
        failed_to_keep=s.failed_to_keep if failed_to_keep is None else failed_to_keep,
    )


def _gather_workspaces(
    rt: Runtime, p: _Pass, ledger_ok: bool
) -> tuple[list[TrackedWorkspace], dict[str, WorkspaceEntry]]:
    """The pool's workspaces with their pods, plus creates not yet in the watch;
    workspaces this process has not seen before are replayed into the ledger."""
    exp = rt.expectations_of(p.key)
    entries = rt.workspaces_of(p.key)
    exp.observe(e.name for e in entries)
    quota = rt.memory.preset(p.key).quota_hold
    quota_held = quota is not None and quota.active(p.now)
    by_name: dict[str, WorkspaceEntry] = {}
    tracked: list[TrackedWorkspace] = []
    for entry in entries:
        by_name[entry.name] = entry
        if ledger_ok and not rt.memory.workspace(entry.uid).replayed:
            _replay(rt, p.preset.uid, entry)
        instance = entry.as_instance()
        if entry.name in exp.deleted:
            instance = replace(instance, deleting=True)
        # A claim has bound it or is binding it: not the pool's any more (its
        # take follows).
        taking = rt.is_kept_off(entry.name)
        if taking:
            instance = replace(instance, claimed=True)
        view = None
        if not entry.claimed and not entry.deleting and not taking:
            view = _workspace_view(rt, p, entry, exp, quota_held)
        tracked.append(
            TrackedWorkspace(entry.name, entry.uid, entry.resource_version, instance, view)
        )
    for _, expected in exp.created.values():
        if expected.name not in by_name:
            tracked.append(TrackedWorkspace(expected.name, "", "", expected))
    return tracked, by_name


def _workspace_view(
    rt: Runtime, p: _Pass, entry: WorkspaceEntry, exp: Expectations, quota_held: bool
) -> WorkspaceView:
    pod = rt.pod(entry.namespace, entry.name)
    if pod is not None:
        exp.pods.pop(entry.name, None)
    written = rt.memory.workspace(entry.uid).phase_written
    return WorkspaceView(
        phase=entry.phase,
        created_at=entry.created_at,
        current=entry.template_hash == p.template_hash,
        pod=pod.view if pod else None,
        pod_deleting=bool(pod and pod.deleting),
        pod_expected=entry.name in exp.created or entry.name in exp.pods,
        quota_held=quota_held,
        written=written[0] if written and written[1] == entry.resource_version else None,
        was_ready=entry.phase is WorkspacePhase.READY or entry.ready_at is not None,
        waiting=entry.waiting_reason,
    )


async def _apply_workspace_actions(
    rt: Runtime,
    p: _Pass,
    tracked: list[TrackedWorkspace],
    actions: list[WorkspaceAction],
    by_name: dict[str, WorkspaceEntry],
) -> list[Instance]:
    """Write each workspace's new phase (and its ledger outcome), create missing
    pods; the pool's instances as they stand afterwards. A workspace whose phase
    was written gets its new resourceVersion in `by_name`: a delete later in the
    pass is conditional on it, and the one read before the write only drew a 409."""
    # Concurrently: while a pool fills, one pass may see many pods turn Ready.
    results = await asyncio.gather(*(_apply_workspace_action(rt, p, a) for a in actions))
    done: dict[str, Instance] = {}
    for action, (instance, version) in zip(actions, results, strict=True):
        name = action.workspace.name
        done[name] = instance
        if version is not None and name in by_name:
            by_name[name] = replace(by_name[name], resource_version=version)
    return [done.get(ws.name, ws.instance) for ws in tracked]


async def _apply_workspace_action(
    rt: Runtime, p: _Pass, action: WorkspaceAction
) -> tuple[Instance, str | None]:
    """The workspace's instance after the action, and its resourceVersion if the
    action wrote its phase."""
    ws, step = action.workspace, action.step
    memory = rt.memory.workspace(ws.uid)
    if step.forget_written:
        memory.phase_written = None
    if step.step is Step.CREATE_POD:
        await _create_pod(
            rt, p.preset, p.spec, p.template_hash, ws.name, ws.uid, ws.resource_version
        )
        return ws.instance, None
    if step.step is Step.ASSUME:
        return instance_after(ws.instance, step, p.now), None
    if step.step is not Step.WRITE or step.outcome is None or step.phase is None:
        return ws.instance, None
    version = await _record_outcome(
        rt, p.preset, ws.name, ws.uid, ws.resource_version, step.outcome, p.now, ws.instance
    )
    if version is None:
        return ws.instance, None
    memory.phase_written = (step.phase, ws.resource_version)
    return instance_after(ws.instance, step, p.now), version


async def _gather_failure(
    rt: Runtime, p: _Pass, ledger_ok: bool, dry_run_message: str | None
) -> tuple[FailureSummary, datetime | None, bool]:
    """(the failure policy, its reset time, whether the ledger answered)."""
    failure, episode_start = None, None
    if ledger_ok:
        try:
            failure, episode_start = await _failure_policy(
                rt,
                p.key,
                p.preset.uid,
                p.spec,
                p.template_hash,
                p.hard_limit,
                dry_run_message,
                p.now,
            )
        except (LedgerUnavailable, TimeoutError) as error:
            log.warning("ledger unavailable for preset %s/%s: %s", *p.key, error)
            ledger_ok = False
    rt.ledger_read(p.key, ledger_ok)
    metrics.ledger_up.set(1 if ledger_ok else 0)
    metrics.ledger_backlog.set(rt.writes.backlog)
    if failure is None or not ledger_ok:
        failure = ledger_down_failure(p.previous, p.hard_limit, dry_run_message)
    return failure, episode_start, ledger_ok


async def _apply_pool(
    rt: Runtime, p: _Pass, decision: PoolDecision, by_name: dict[str, WorkspaceEntry]
) -> None:
    """The plan's deletes and creates, and the bookkeeping of the create caps."""
    exp = rt.expectations_of(p.key)
    for deletion in decision.plan.deletions:
        doomed = by_name.get(deletion.name)
        if doomed is None or rt.is_kept_off(doomed.name):
            continue  # a claim bound it since this pass read it: its take follows
        with rt.reserving(doomed.name):  # no claim binds it while the delete is out
            deleted = await rt.kube.delete_workspace(
                doomed.namespace, doomed.name, doomed.resource_version
            )
        if deleted:
            exp.deleted[doomed.name] = time.monotonic()
            log.info("deleted prebuild %s/%s (%s)", doomed.namespace, doomed.name, deletion.reason)
    if decision.creating:
        await asyncio.gather(
            *(
                _create_one(rt, p.preset, p.spec, p.template_hash, p.now)
                for _ in range(decision.creating)
            )
        )
    memory = rt.memory.preset(p.key)
    was_starting = memory.starting
    memory.starting = decision.plan.counts.starting + decision.creating
    if decision.waiting_for_global_room:
        memory.waiting_for_global_room = True  # the operator-wide cap held it back
    if memory.starting < was_starting:
        rt.wake_waiting_for_global_room()  # prebuilds of this preset finished: room for others
    if not decision.keep_quota_hold:
        memory.quota_hold = None  # nothing of the pool waits for the quota any more


async def _apply_status(
    rt: Runtime, p: _Pass, plan: PresetPlan, failure: FailureSummary, episode_start: datetime | None
) -> None:
    """The status (if the plan says so), its Events, the hard-limit notice and the gauges."""
    memory = rt.memory.preset(p.key)
    if plan.write_status:
        patch = status_patch(plan.status)
        try:
            await rt.kube.patch_preset_status(p.preset.namespace, p.preset.name, {"status": patch})
        except ApiError as error:
            if not error.not_found:
                raise
        stored = {k: v for k, v in patch.items() if v is not None}
        memory.status_written = (p.preset.resource_version, stored)
    _remember_hold(memory, plan)
    for intent in plan.events:
        await _event(rt, p.preset, intent)
    if plan.notify_hard_limit:
        await _hard_limit_notice(rt, p.preset, p.template_hash, episode_start, failure)
    if memory.gauges_of != plan.status:
        _record_gauges(p.key, plan.status)
        memory.gauges_of = plan.status


def _remember_hold(memory: PresetMemory, plan: PresetPlan) -> None:
    """Since when a change of the status waits (the first pass that held one back)."""
    if not plan.hold_status:
        memory.status_held_since = None  # written, or nothing left to write
    elif memory.status_held_since is None:
        memory.status_held_since = time.monotonic()


def _replay(rt: Runtime, preset_uid: str, entry: WorkspaceEntry) -> None:
    """Record what the cluster says of a workspace this process has not seen yet.

    A crash can fall between a Kubernetes write and its ledger row; writing
    every workspace's start and fate once per process fills such gaps. Only
    gaps: what the ledger holds already (the real failure time and message)
    stays as recorded.
    """
    rt.memory.workspace(entry.uid).replayed = True
    failed = entry.phase is WorkspacePhase.FAILED
    disrupted = entry.phase is WorkspacePhase.DISRUPTED
    build = ReplayedBuild(
        workspace_uid=entry.uid,
        preset_uid=preset_uid,
        workspace_name=entry.name,
        template_hash=entry.template_hash,
        started_at=entry.created_at,
        ready_at=entry.ready_at,
        # Workspaces failed before failedAt existed fall back to their creation.
        failed_at=(entry.failed_at or entry.created_at) if failed else None,
        failure_reason=entry.failure_reason or "Unknown",
        failure_message=entry.failure_message or "recorded from the workspace's status",
        validation_error=entry.failure_reason == FailureReason.POD_REJECTED,
        # The status keeps no disruption time: its creation is the lower bound.
        disrupted_at=entry.created_at if disrupted else None,
        disruption_reason=entry.failure_reason or "Unknown",
        disruption_message=entry.failure_message or "recorded from the workspace's status",
    )
    rt.record_build(
        (entry.namespace, entry.preset),
        f"replay {entry.name}",
        lambda: rt.ledger.replay_build(build),
        failed=failed,
    )


async def _ledger_bookkeeping(
    rt: Runtime, preset: PresetEntry, thash: str, hard_limit: int
) -> bool:
    """Tell the ledger the preset's current hash, hard limit and any new retry;
    True if a retry began."""
    memory = rt.memory.preset_object(preset.uid)
    if memory.recorded != (thash, hard_limit):
        await rt.ledger.upsert_preset(
            preset.uid, preset.namespace, preset.name, thash, preset.generation, hard_limit
        )
        memory.recorded = (thash, hard_limit)
    retry_token = preset.annotations.get(ANNOTATION_RETRY)
    if not retry_token or memory.retry_token == retry_token:
        return False
    # The precise time, as builds' starts are recorded: a pass's `now` is whole
    # seconds, and a build started in the same second as the retry must fall
    # on its side of the reset.
    retried = await rt.ledger.record_retry(preset.uid, retry_token, datetime.now(UTC))
    memory.retry_token = retry_token
    rt.failure_memo.forget((preset.namespace, preset.name))
    if retried:
        await _event(
            rt,
            preset,
            EventIntent(
                "Normal",
                reasons.REASON_PREBUILD_RETRY_REQUESTED,
                f"prewarm.dev/retry={retry_token}: failures so far no longer count",
            ),
        )
    return retried


async def _failure_policy(
    rt: Runtime,
    key: PresetKey,
    preset_uid: str,
    spec: PresetSpec,
    thash: str,
    hard_limit: int,
    dry_run_message: str | None,
    now: datetime,
) -> tuple[FailureSummary, datetime | None]:
    """The failure policy from the ledger (after the outcomes still queued are
    in), or as remembered if no build of the preset started or ended since."""
    s = rt.settings
    policy = spec.failure_policy
    backoff_base = s.backoff_base if policy.backoff_base is None else policy.backoff_base
    backoff_max = s.backoff_max if policy.backoff_max is None else policy.backoff_max
    question = (preset_uid, thash, hard_limit, backoff_base, backoff_max, s.failure_lookback)
    state = rt.failure_memo.get(key, question)
    if state is None or rt.writes.stalled(LEDGER_DRAIN_TIMEOUT_S):
        # Ask PostgreSQL (after the queued writes). A remembered answer must
        # not hide an outage: with writes stuck, this times out and the pass
        # calls the ledger unavailable, as a pass without the memo would.
        ticket = rt.failure_memo.ticket(key)
        await asyncio.wait_for(rt.writes.drain(), LEDGER_DRAIN_TIMEOUT_S)
        state = await rt.ledger.failure_state(
            preset_uid,
            thash,
            hard_limit=hard_limit,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            lookback=s.failure_lookback,
            now=now,
        )
        rt.failure_memo.put(key, ticket, question, state, now)
    last_failure = (
        LastFailure(
            reason=state.last_failure.reason,
            message=state.last_failure.message,
            time=state.last_failure.at,
        )
        if state.last_failure
        else None
    )
    summary = FailureSummary(
        hard_limited=state.hard_limited,
        hard_limit=hard_limit,
        consecutive_failures=state.consecutive_failures,
        validation_failed=dry_run_message is not None or state.validation_failed,
        validation_message=dry_run_message
        or (last_failure.message if state.validation_failed and last_failure else None),
        backoff_until=state.backoff_until,
        last_failure=last_failure,
    )
    return summary, state.episode_start


async def _validate_template(
    rt: Runtime,
    preset: PresetEntry,
    spec: PresetSpec,
    thash: str,
    previous: PresetStatus,
    force: bool,
) -> str | None:
    """The API server's verdict on the pod template, by server-side dry-run.

    Run once per template hash (this process and the status remember the
    verdict; the status alone could lag behind in the watch), again on an
    explicit retry. Returns the rejection message, or None if accepted.
    """
    remembered = rt.memory.preset_object(preset.uid).dry_run
    if remembered is not None and remembered[0] == thash and not force:
        return remembered[1]
    known = previous.template_hash == thash
    if known and not force:
        if previous.prebuild_status is PrebuildStatus.VALIDATION_FAILED:
            condition = next(
                (c for c in previous.conditions if c.type == reasons.VALIDATION_FAILED), None
            )
            return condition.message if condition else "the API server rejected the pod template"
        return None
    pod = render_pod(
        spec,
        preset.namespace,
        preset.name,
        thash,
        f"{preset.name[:40]}-dry-run",
        None,
        agent_image=rt.settings.agent_image,
    )
    verdict: str | None = None
    try:
        await rt.kube.create_pod(preset.namespace, pod, dry_run=True)
    except ApiError as error:
        # A full quota is checked after the pod passed validation: the template is fine.
        if not error.rejected and not error.quota_exceeded:
            raise
        if error.rejected:
            verdict = f"pod template rejected by the API server: {error.message}"
    rt.memory.preset_object(preset.uid).dry_run = (thash, verdict)
    if verdict is not None:
        # No build row will say so: the ledger's status column is told directly.
        rt.writes.submit(
            f"preset {preset.name} validation failed",
            lambda: rt.ledger.set_preset_status(preset.uid, PrebuildStatus.VALIDATION_FAILED),
        )
    return verdict


async def _create_one(
    rt: Runtime, preset: PresetEntry, spec: PresetSpec, thash: str, now: datetime
) -> None:
    key = (preset.namespace, preset.name)
    body = render_workspace(preset.namespace, preset.name, preset.uid, thash)
    try:
        created = await rt.kube.create_workspace(preset.namespace, body)
    except ApiError as error:
        if not (error.rejected or error.quota_exceeded or error.forbidden_by_rbac):
            raise  # 409, 429, 5xx: the pass fails and is tried again
        await _create_refused(rt, preset, error)
        return
    rt.memory.preset(key).create_refusal = None
    name = created["metadata"]["name"]
    uid = created["metadata"]["uid"]
    rt.expectations_of(key).created[name] = (
        time.monotonic(),
        Instance(name=name, template_hash=thash, phase=WorkspacePhase.PENDING, created_at=now),
    )
    started = datetime.now(UTC)  # precise: a retry's reset must fall on one side of it
    rt.record_build(
        key,
        f"build {name} started",
        lambda: rt.ledger.record_build_started(preset.uid, uid, name, thash, started),
        failed=False,
    )
    rt.memory.workspace(uid).replayed = True
    metrics.prebuilds_created.labels(*key).inc()
    await _create_pod(rt, preset, spec, thash, name, uid, created["metadata"]["resourceVersion"])


async def _create_refused(rt: Runtime, preset: PresetEntry, error: ApiError) -> None:
    """The API server refused the PrebuiltWorkspace itself: no build started
    (nothing for the failure policy); creates wait, doubling from 5 s to 60 s,
    and the preset's CreateRefused condition, an Event and a metric say why."""
    key = (preset.namespace, preset.name)
    memory = rt.memory.preset(key)
    hold = refused(memory.create_refusal, error.message, _now())
    memory.create_refusal = hold
    metrics.workspace_creates_refused.labels(*key).inc()
    at, status, message = _now(), error.status, error.message
    rt.writes.submit(
        f"create of a workspace of {preset.name} refused",
        lambda: rt.ledger.record_create_refused(preset.uid, status, message, at),
    )
    log.warning(
        "the API server refused a PrebuiltWorkspace of %s/%s, retrying at %s: %s",
        *key,
        rfc3339(hold.retry_at),
        error.message,
    )
    digest = hashlib.sha256(error.message.encode()).hexdigest()[:16]
    await _event(
        rt,
        preset,
        EventIntent(
            "Warning",
            reasons.REASON_WORKSPACE_CREATE_REFUSED,
            f"creating a PrebuiltWorkspace was refused ({error.status}): {error.message}",
            once_key=f"create-refused/{digest}",
        ),
    )
    rt.requeue_after(key, (hold.retry_at - _now()).total_seconds())


async def _create_pod(
    rt: Runtime,
    preset: PresetEntry,
    spec: PresetSpec,
    thash: str,
    name: str,
    uid: str,
    resource_version: str,
) -> None:
    key = (preset.namespace, preset.name)
    rt.expectations_of(key).pods[name] = time.monotonic()
    rejection = await ensure_pod(rt, preset.namespace, preset.name, spec, thash, name, uid)
    if rejection is not None and rejection.quota_exceeded:
        # Not the template's fault: the workspace waits (Pending, no pod) and
        # its pod is tried again when the hold ends; nothing counts as failed.
        rt.expectations_of(key).pods.pop(name, None)
        memory = rt.memory.preset(key)
        hold = refused(memory.quota_hold, rejection.message, _now())
        memory.quota_hold = hold
        log.warning(
            "a ResourceQuota refused the pod of %s/%s, retrying at %s: %s",
            preset.namespace,
            name,
            rfc3339(hold.retry_at),
            hold.message,
        )
        rt.requeue_after(key, (hold.retry_at - _now()).total_seconds())
        return
    if rejection is None:
        rt.memory.preset(key).quota_hold = None
    else:
        outcome = Outcome(
            Verdict.FAILED,
            FailureReason.POD_REJECTED,
            f"the API server rejected the pod: {rejection.message}",
        )
        await _record_outcome(rt, preset, name, uid, resource_version, outcome, _now(), None)


async def _record_outcome(
    rt: Runtime,
    preset: PresetEntry,
    name: str,
    uid: str,
    resource_version: str,
    outcome: Outcome,
    now: datetime,
    instance: Instance | None,
) -> str | None:
    """Write a workspace's new phase (conditional on what we read) and record
    its outcome; its new resourceVersion, or None if it changed since it was read."""
    first_ready = instance is None or instance.ready_at is None
    status = outcome_status(outcome, name, now, first_ready)
    try:
        written = await rt.kube.patch_workspace_status(
            preset.namespace, name, workspace_status_patch(status, resource_version)
        )
    except ApiError as error:
        if error.conflict or error.not_found:
            return None  # changed (claimed?) or gone since we read it: the next pass sees it
        raise
    key = (preset.namespace, preset.name)
    if outcome.verdict is Verdict.READY and first_ready:
        rt.record_build(
            key,
            f"build {name} ready",
            lambda: rt.ledger.record_build_succeeded(uid, now),
            failed=False,
        )
        if instance is not None:
            ready_s = (now - instance.created_at).total_seconds()
            metrics.prebuild_ready_seconds.observe(max(ready_s, 0))
    elif outcome.verdict is Verdict.FAILED:
        await _record_failure(rt, preset, name, uid, outcome, now)
    elif outcome.verdict is Verdict.DISRUPTED:
        _record_disruption(rt, preset, name, uid, outcome, now)
    return str(written["metadata"]["resourceVersion"])


async def _record_failure(
    rt: Runtime, preset: PresetEntry, name: str, uid: str, outcome: Outcome, now: datetime
) -> None:
    key = (preset.namespace, preset.name)
    reason, message = str(outcome.reason), outcome.message
    rejected = outcome.reason is FailureReason.POD_REJECTED
    rt.record_build(
        key,
        f"build {name} failed",
        lambda: rt.ledger.record_build_failed(uid, reason, message, now, validation_error=rejected),
        failed=True,
    )
    metrics.prebuilds_failed.labels(*key, reason).inc()
    log.warning("prebuild %s/%s failed: %s: %s", preset.namespace, name, reason, message)
    memory = rt.memory.preset(key)
    if failure_event_due(memory.failure_event_at, time.monotonic()):
        memory.failure_event_at = time.monotonic()
        intent = EventIntent(
            "Warning",
            reasons.REASON_PREBUILD_FAILED,
            f"prebuild {name} failed: {reason}: {message}",
            once_key=f"failed/{uid}",
        )
        await _event(rt, preset, intent)


def _record_disruption(
    rt: Runtime, preset: PresetEntry, name: str, uid: str, outcome: Outcome, now: datetime
) -> None:
    """Lost to its infrastructure: recorded and replaced, never a step toward the limit."""
    record_disruption(rt, (preset.namespace, preset.name), f"build {name}", uid, outcome, now)
    log.info(
        "prebuild %s/%s disrupted (replaced): %s: %s",
        preset.namespace,
        name,
        outcome.reason,
        outcome.message,
    )


async def _hard_limit_notice(
    rt: Runtime,
    preset: PresetEntry,
    thash: str,
    episode_start: datetime | None,
    failure: FailureSummary,
) -> None:
    last = failure.last_failure
    detail = f"{last.reason}: {last.message}" if last else "unknown"
    log.warning(
        "preset %s/%s is hard-limited after %d consecutive failed prebuilds (last: %s); "
        "no new prebuilds until its spec changes or prewarm.dev/retry is set",
        preset.namespace,
        preset.name,
        failure.consecutive_failures,
        detail,
    )
    mark = (thash, episode_start)
    notified = rt.memory.preset_object(preset.uid).notified
    if mark in notified:
        return
    if await rt.ledger.mark_hard_limit_notified(preset.uid, thash, episode_start, _now()):
        await _event(
            rt,
            preset,
            EventIntent(
                "Warning",
                reasons.REASON_PREBUILD_FAILURE_LIMIT_REACHED,
                f"the last {failure.hard_limit} prebuilds failed (last: {detail}); "
                "prebuilds stop until the spec changes or prewarm.dev/retry is set",
            ),
        )
    notified.add(mark)


def _record_gauges(key: PresetKey, status: PresetStatus) -> None:
    metrics.start_preset(*key)
    metrics.preset_desired.labels(*key).set(status.desired)
    metrics.preset_running.labels(*key).set(status.running)
    metrics.preset_eligible.labels(*key).set(status.ready)
    metrics.preset_starting.labels(*key).set(status.starting)
    metrics.preset_hard_limited.labels(*key).set(
        1 if status.prebuild_status is PrebuildStatus.HARD_LIMITED else 0
    )
    metrics.preset_validation_failed.labels(*key).set(
        1 if status.prebuild_status is PrebuildStatus.VALIDATION_FAILED else 0
    )
    metrics.preset_paused.labels(*key).set(1 if status.paused else 0)
    metrics.preset_schedule_invalid.labels(*key).set(
        1 if is_true(status.conditions, reasons.SCHEDULE_INVALID) else 0
    )
    auto = status.autoscale
    metrics.set_autoscale(
        *key,
        None
        if auto is None
        else (
            auto.arrivals_per_minute,
            auto.build_seconds_p50,
            auto.build_seconds_p90,
            auto.slot_seconds_p90,
            auto.predicted_miss_ratio,
            auto.recommended,
        ),
        auto.reason if auto else "",
        tuple(AutoscaleReason),
    )
