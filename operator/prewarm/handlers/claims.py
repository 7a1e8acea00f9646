"""One reconcile pass of one WorkspaceClaim: take a warm workspace or build one.

A warm claim binds first: the claim's Bound names a Ready workspace no other
claim of this process is taking (Runtime.reserved), then the take
(handlers/claim_take.py: a conditional merge patch of the workspace moving
it from the preset to the claim) and the pod annotations the agent watches:
four writes with the client's create, of which the user waits for two. The
workspace's status is not written on a take (it stays Ready; its claimRef
says whose it is).

A Bound claim's passes are in handlers/claims_bound.py; the writes both
share, in handlers/claim_writes.py.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from prewarm import metrics
from prewarm.api import reasons
from prewarm.api.claim import ClaimPhase, ClaimSource, WorkspaceClaimStatus
from prewarm.api.conditions import get_condition, set_condition
from prewarm.api.constants import (
    ANNOTATION_PAUSED,
    ANNOTATION_REINIT_GENERATION,
)
from prewarm.api.preset import PrebuildStatus, PresetSpec, PresetStatus
from prewarm.api.reasons import FailureReason
from prewarm.api.timestamps import rfc3339
from prewarm.api.workspace import PrebuiltWorkspaceStatus, WorkspacePhase, workspace_status_patch
from prewarm.handlers.claim_take import take_and_hand_over
from prewarm.handlers.claim_writes import (
    annotate_pod,
    copy_owner_credentials,
    event,
    fail,
    patch_claim,
    utc_now,
)
from prewarm.handlers.claims_bound import (
    check_reinitialized,
    check_workspace,
    ensure_pod_knows_owner,
    expire,
)
from prewarm.handlers.memory import ClaimKey
from prewarm.handlers.runtime import Runtime
from prewarm.handlers.watched import ClaimEntry, PresetEntry, WorkspaceEntry
from prewarm.handlers.workspaces import ensure_pod, record_disruption
from prewarm.k8s.client import ApiError
from prewarm.planning.claim_parameters import ResolvedParameters, resolve_parameters
from prewarm.planning.claims import (
    Action,
    ClaimDecision,
    Follow,
    PresetView,
    Route,
    claim_deadline,
    claim_route,
    decide_claim,
    follow_own_workspace,
)
from prewarm.planning.failures import Outcome, Verdict
from prewarm.planning.preset_pass import outcome_status
from prewarm.planning.quota import QUOTA_RETRY_FIRST, quota_message
from prewarm.planning.reinit import pod_agents, reinit_pending
from prewarm.planning.render import ClaimRef, render_workspace

log = logging.getLogger("prewarm.claims")


async def reconcile_claim(rt: Runtime, key: ClaimKey) -> None:
    claim = rt.claim(key)
    memory = rt.memory.claim(key)
    status = WorkspaceClaimStatus.model_validate(claim.status if claim else {})
    mine = None
    deadline = None
    if claim is not None:
        mine = next(
            (
                w
                for w in rt.workspaces_of(
                    (claim.namespace, claim.preset), lambda w: w.claim == claim.name
                )
                if not w.deleting and w.name not in memory.lost
            ),
            None,
        )
        deadline = claim_deadline(claim.lifetime, claim.shutdown_at, status.bound_at)
    route = claim_route(
        exists=claim is not None and not claim.deleting,
        may_act=rt.may_act(),
        phase=status.phase,
        bound_here=memory.bound_to is not None,
        carried=mine is not None,
        cold_start_pending=memory.cold_start_pending(),
        expired=deadline is not None and deadline <= utc_now(),
        lost_here=status.workspace_name in memory.lost,
    )
    if route.requeue_after is not None:
        rt.requeue_claim_after(key, route.requeue_after)
    if route.route is Route.FORGET:
        rt.forget_claim(key)  # its workspace goes with it (ownerReference)
        return
    if claim is None or route.route in (Route.HOLD, Route.DONE):
        return
    if route.route is Route.EXPIRE:
        assert deadline is not None
        await expire(rt, claim, status, mine, deadline)
        return
    if route.route is Route.BOUND:
        memory.bound_to = None
        ws = rt.workspace_named(claim, status.workspace_name)
        if await check_workspace(rt, claim, status, ws, deadline):
            await ensure_pod_knows_owner(rt, claim, status, ws)
            await check_reinitialized(rt, claim, status)
        return
    if route.route is Route.WATCH_LAGS:
        return
    if memory.seen_at is None:
        memory.seen_at = time.monotonic()
    _record_requested(rt, claim)
    if mine is not None:
        memory.cold_started_at = None
        await _follow_own_workspace(rt, claim, status, mine, memory.seen_at)
        return
    await _claim_new(rt, claim, status, memory.seen_at)


def _record_requested(rt: Runtime, claim: ClaimEntry) -> None:
    """The request, in the ledger once per claim and process (an upsert: replays are safe)."""
    memory = rt.memory.claim((claim.namespace, claim.name))
    if memory.recorded_uid == claim.uid:
        return
    preset = rt.preset((claim.namespace, claim.preset))
    requested = (
        claim.uid,
        preset.uid if preset else "",
        claim.namespace,
        claim.name,
        claim.owner,
        utc_now(),
    )
    rt.writes.submit(
        f"claim {claim.name} requested", lambda: rt.ledger.record_claim_requested(*requested)
    )
    memory.recorded_uid = claim.uid


def _preset_view(
    rt: Runtime, claim: ClaimEntry
) -> tuple[PresetEntry | None, PresetSpec | None, PresetView]:
    """The claim's preset as the decision sees it (exists: it parses and is not going)."""
    entry = rt.preset((claim.namespace, claim.preset))
    if entry is None or entry.deleting:
        return entry, None, PresetView(exists=False)
    spec, thash = rt.parsed_spec(entry)
    status = PresetStatus.model_validate(entry.status)
    return (
        entry,
        spec,
        PresetView(
            exists=spec is not None,
            template_hash=thash,
            previous_template_hash=status.previous_template_hash,
            prebuild_status=status.prebuild_status or PrebuildStatus.NORMAL,
            paused=rt.settings.paused or entry.annotations.get(ANNOTATION_PAUSED) == "true",
        ),
    )


async def _claim_new(
    rt: Runtime, claim: ClaimEntry, status: WorkspaceClaimStatus, seen: float
) -> None:
    preset_entry, spec, view = _preset_view(rt, claim)
    secret_missing = None
    if claim.owner_secret and view.exists:
        try:
            await rt.kube.get_secret(claim.namespace, claim.owner_secret)
        except ApiError as error:
            if not error.not_found:
                raise
            secret_missing = claim.owner_secret
    parameters = resolve_parameters(spec.claim_parameters, claim.parameters) if spec else None
    parameters = parameters or ResolvedParameters()
    workspaces = rt.workspaces_of((claim.namespace, claim.preset))
    decision = _decide_claim(
        rt, claim, status, spec, view, workspaces, secret_missing, parameters.problem
    )

    if decision.action is Action.WAIT:
        await patch_claim(rt, claim, status, ClaimPhase.PENDING, decision.reason, decision.message)
        if decision.requeue_after is not None:
            rt.requeue_claim_after((claim.namespace, claim.name), decision.requeue_after)
        return
    if decision.action is Action.FAIL:
        await fail(rt, claim, status, decision.reason, decision.message)
        return
    assert preset_entry is not None
    assert spec is not None
    if decision.action is Action.TAKE_PREBUILT:
        # The first candidate: none is kept off (_decide_claim), and nothing
        # awaited since the decision could have changed that.
        ws = next(w for w in workspaces if w.name == decision.candidates[0])
        with rt.reserving(ws.name):
            await _take(rt, claim, status, ws, seen, spec, parameters.values)
        return
    await _cold_start(
        rt,
        claim,
        status,
        spec,
        (view.template_hash, preset_entry.uid),
        decision.message,
        parameters.values,
    )


def _decide_claim(
    rt: Runtime,
    claim: ClaimEntry,
    status: WorkspaceClaimStatus,
    spec: PresetSpec | None,
    view: PresetView,
    workspaces: list[WorkspaceEntry],
    secret_missing: str | None,
    parameters_problem: str | None = None,
) -> ClaimDecision:
    instances = [w.as_instance() for w in workspaces]
    cold_build = status.workspace_name if status.source is ClaimSource.COLD else None
    now = utc_now()
    grace = claim.cold_start_grace
    if grace is None and spec is not None:
        grace = spec.claims.cold_start_grace
    # Not what a claim or the pool is on right now, nor what the pool deleted
    # before the watch shows it: a claim binds before it takes.
    deleted = rt.expectations_of((claim.namespace, claim.preset)).deleted
    decision = decide_claim(
        view,
        instances,
        frozenset(rt.kept_off().union(deleted)),
        secret_missing,
        waited=now - claim.created_at if claim.created_at else timedelta(0),
        wait_limit=rt.settings.claim_wait_limit or None,
        cold_build=cold_build,
        fresh=claim.fresh,
        grace=grace or timedelta(0),
        pending_for=now - _pending_since(claim, status, now),
        parameters_problem=parameters_problem,
    )
    # While it waits for a warm one, that preset's workspace events wake it.
    waiting = decision.reason == reasons.REASON_WAITING_FOR_WARM
    rt.memory.wait_for_warm(
        (claim.namespace, claim.name), (claim.namespace, claim.preset) if waiting else None
    )
    return decision


def _pending_since(claim: ClaimEntry, status: WorkspaceClaimStatus, now: datetime) -> datetime:
    """Since when a claim waits for a workspace: its creation, or the loss of its last one."""
    lost = get_condition(status.conditions, reasons.WORKSPACE_LOST)
    if lost is not None and lost.status == "True":
        return lost.last_transition_time
    return claim.created_at or now


async def _take(
    rt: Runtime,
    claim: ClaimEntry,
    status: WorkspaceClaimStatus,
    ws: WorkspaceEntry,
    seen: float,
    spec: PresetSpec,
    parameters: tuple[tuple[str, str], ...],
) -> None:
    """Bound first (what the user waits for), then the take and the hand-over
    (what the agent waits for): the user's wait is one write after the
    claim's create (docs/decisions.md, "A claim binds first"). The workspace
    is in Runtime.reserved meanwhile, so no other claim and not the pool
    touches it; if the take still meets a change, the claim's next pass sees
    whose the workspace is (handlers/claims_bound.py). The workspace's status
    is not written: it stays Ready, and its spec (claimRef, owner) says it is
    taken (docs/decisions.md, "A warm claim's writes")."""
    generation = ws.reinit_generation + 1
    await _bind(rt, claim, status, ws.name, ClaimSource.PREBUILT, generation, seen)
    await take_and_hand_over(rt, claim, ws, generation, parameters, spec)


async def _cold_start(
    rt: Runtime,
    claim: ClaimEntry,
    status: WorkspaceClaimStatus,
    spec: PresetSpec,
    preset: tuple[str, str],
    why: str,
    parameters: tuple[tuple[str, str], ...],
) -> None:
    thash, preset_uid = preset
    ref = ClaimRef(claim.name, claim.uid, claim.owner, status.rebinds, parameters)
    body = render_workspace(claim.namespace, claim.preset, preset_uid, thash, claim=ref)
    try:
        created = await rt.kube.create_workspace(claim.namespace, body)
    except ApiError as error:
        if not error.conflict:
            raise
        # This claim's one cold workspace exists already (its name is the
        # claim's): an earlier pass built it and the watch has not shown it yet.
        rt.memory.claim((claim.namespace, claim.name)).cold_started_at = time.monotonic()
        rt.requeue_claim_after((claim.namespace, claim.name), 0.5)
        return
    rt.memory.claim((claim.namespace, claim.name)).cold_started_at = time.monotonic()
    name = created["metadata"]["name"]
    uid = created["metadata"]["uid"]
    started = utc_now()
    rt.record_build(
        (claim.namespace, claim.preset),
        f"cold build {name} started",
        lambda: rt.ledger.record_build_started(
            preset_uid,
            uid,
            name,
            thash,
            started,
            namespace=claim.namespace,
            preset_name=claim.preset,
        ),
        failed=False,
    )
    if not await _ensure_cold_pod(rt, claim, status, spec, thash, (name, uid), parameters):
        return
    metrics.claim_misses.labels(claim.namespace, claim.preset).inc()
    await patch_claim(
        rt,
        claim,
        status,
        ClaimPhase.PENDING,
        reasons.REASON_COLD_START,
        f"building workspace {name} for {claim.owner}: {why}",
        extra={"workspaceName": name, "source": ClaimSource.COLD.value},
    )
    await event(rt, claim, "Normal", reasons.REASON_COLD_START, f"no warm workspace: {why}")


async def _ensure_cold_pod(
    rt: Runtime,
    claim: ClaimEntry,
    status: WorkspaceClaimStatus,
    spec: PresetSpec,
    thash: str,
    ws: tuple[str, str],
    parameters: tuple[tuple[str, str], ...],
) -> bool:
    """Create the cold workspace's pod; False if the API server refused it (the
    claim then failed, or waits for a full quota and tries again)."""
    workspace, workspace_uid = ws
    ref = ClaimRef(claim.name, claim.uid, claim.owner, parameters=parameters)
    refusal = await ensure_pod(
        rt,
        claim.namespace,
        claim.preset,
        spec,
        thash,
        workspace,
        workspace_uid,
        ref,
        claim.owner_secret,
    )
    if refusal is None:
        return True
    if refusal.quota_exceeded:
        await patch_claim(
            rt,
            claim,
            status,
            ClaimPhase.PENDING,
            reasons.REASON_QUOTA_EXCEEDED,
            f"workspace {workspace} waits for room in the namespace: "
            f"{quota_message(refusal.message)}",
            extra={"workspaceName": workspace, "source": ClaimSource.COLD.value},
        )
        rt.requeue_claim_after((claim.namespace, claim.name), QUOTA_RETRY_FIRST.total_seconds())
        return False
    await fail(rt, claim, status, FailureReason.POD_REJECTED, refusal.message)
    return False


async def _follow_own_workspace(
    rt: Runtime, claim: ClaimEntry, status: WorkspaceClaimStatus, ws: WorkspaceEntry, seen: float
) -> None:
    """A workspace already carries this claim: drive it to Bound or Failed."""
    key = (claim.namespace, claim.name)
    pod = rt.pod(claim.namespace, ws.name)
    preset = rt.preset((claim.namespace, claim.preset))
    spec = rt.parsed_spec(preset)[0] if preset is not None else None
    timeout = (spec and spec.failure_policy.readiness_timeout) or rt.settings.readiness_timeout
    step = follow_own_workspace(
        ws.phase,
        ws.reinit_generation,
        ws.created_at,
        pod.view if pod else None,
        spec is not None,
        utc_now(),
        timeout,
        rt.settings.crashloop_restarts,
        pod.annotations.get(ANNOTATION_REINIT_GENERATION, "") if pod else "",
    )
    if step.requeue_after is not None:
        rt.requeue_claim_after(key, step.requeue_after)
    if step.action is Follow.FINISH_TAKE:
        # In a take's order (the owner's credentials, Bound, the pod's
        # annotations), each idempotent; the pod's only if the take did not get that far.
        if step.write_pod:
            await copy_owner_credentials(rt, claim, ws.name, spec)
        source = status.source or ClaimSource.PREBUILT
        await _bind(rt, claim, status, ws.name, source, step.generation, seen)
        if step.write_pod:
            await annotate_pod(rt, claim, ws.name, step.generation, ws.claim_parameters)
        return
    if step.action is Follow.CREATE_POD and spec is not None:
        await _ensure_cold_pod(
            rt, claim, status, spec, ws.template_hash, (ws.name, ws.uid), ws.claim_parameters
        )
        return
    if step.action is Follow.FAIL and step.outcome is not None:
        await _cold_build_failed(rt, claim, status, ws, step.outcome)
    elif step.action is Follow.BIND_COLD:
        await _cold_build_ready(rt, claim, status, ws, seen)


async def _cold_build_failed(
    rt: Runtime,
    claim: ClaimEntry,
    status: WorkspaceClaimStatus,
    ws: WorkspaceEntry,
    outcome: Outcome,
) -> None:
    now = utc_now()
    await rt.kube.patch_workspace_status(
        claim.namespace,
        ws.name,
        workspace_status_patch(outcome_status(outcome, ws.name, now, True)),
    )
    reason, message = str(outcome.reason), outcome.message
    key = (claim.namespace, claim.preset)
    if outcome.verdict is Verdict.DISRUPTED:
        record_disruption(rt, key, f"cold build {ws.name}", ws.uid, outcome, now)
        await fail(rt, claim, status, reason, f"cold start disrupted: {message}")
        return
    rt.record_build(
        key,
        f"cold build {ws.name} failed",
        lambda: rt.ledger.record_build_failed(ws.uid, reason, message, now),
        failed=True,
    )
    await fail(rt, claim, status, reason, f"cold start failed: {message}")


async def _cold_build_ready(
    rt: Runtime, claim: ClaimEntry, status: WorkspaceClaimStatus, ws: WorkspaceEntry, seen: float
) -> None:
    now = utc_now()
    await rt.kube.patch_workspace_status(
        claim.namespace,
        ws.name,
        workspace_status_patch(
            PrebuiltWorkspaceStatus(
                # Ready, as a warm one: its claimRef says whose it is.
                phase=WorkspacePhase.READY,
                pod_name=ws.name,
                ready_at=now,
                reinit_generation=1,
            )
        ),
    )
    rt.record_build(
        (claim.namespace, claim.preset),
        f"cold build {ws.name} ready",
        lambda: rt.ledger.record_build_succeeded(ws.uid, now),
        failed=False,
    )
    await _bind(rt, claim, status, ws.name, ClaimSource.COLD, 1, seen)


async def _bind(
    rt: Runtime,
    claim: ClaimEntry,
    status: WorkspaceClaimStatus,
    workspace: str,
    source: ClaimSource,
    generation: int,
    seen: float,
) -> None:
    now = utc_now()
    # boundAt is the first binding: a claim's lifetime counts from it, and a
    # rebind after a lost workspace neither resets it nor extends the lifetime.
    first = status.bound_at or now
    extra: dict[str, Any] = {
        "workspaceName": workspace,
        "source": source.value,
        "boundAt": rfc3339(first, milliseconds=True),
        "reinitGeneration": generation,
    }
    deadline = claim_deadline(claim.lifetime, claim.shutdown_at, first)
    if deadline is not None:
        extra["expiresAt"] = rfc3339(deadline, milliseconds=True)
    await patch_claim(
        rt,
        claim,
        _reinit_pending(rt, claim, _rebound(status, now), workspace, generation, now),
        ClaimPhase.BOUND,
        reasons.REASON_CLAIMED_PREBUILT if source is ClaimSource.PREBUILT else reasons.BOUND,
        f"workspace {workspace} ({source.value}) belongs to {claim.owner}",
        extra=extra,
    )
    elapsed = time.monotonic() - seen
    metrics.claim_duration.labels(source.value).observe(elapsed)
    metrics.claims.labels(claim.namespace, claim.preset, source.value).inc()
    _record_bound(rt, claim, workspace, source, now, rebind=status.rebinds > 0)
    memory = rt.memory.claim((claim.namespace, claim.name))
    memory.seen_at = None
    memory.bound_to = workspace
    log.info(
        "claim %s/%s bound to %s (%s) in %.1f ms",
        claim.namespace,
        claim.name,
        workspace,
        source.value,
        elapsed * 1000,
        extra={"workspace": workspace},
    )


def _record_bound(
    rt: Runtime,
    claim: ClaimEntry,
    workspace: str,
    source: ClaimSource,
    now: datetime,
    rebind: bool,
) -> None:
    ws = rt.workspace_named(claim, workspace)
    ws_uid = ws.uid if ws else ""
    if rebind:
        rt.writes.submit(
            f"claim {claim.name} rebound",
            lambda: rt.ledger.record_claim_rebound(claim.uid, ws_uid, workspace, source, now),
        )
        return
    rt.writes.submit(
        f"claim {claim.name} bound",
        lambda: rt.ledger.record_claim_bound(
            claim.uid, ws_uid, workspace, claim.owner, source, now
        ),
    )


def _reinit_pending(
    rt: Runtime,
    claim: ClaimEntry,
    status: WorkspaceClaimStatus,
    workspace: str,
    generation: int,
    now: datetime,
) -> WorkspaceClaimStatus:
    """Bound and `Reinitialized: Unknown` in one write when the pod has agents, so
    whoever waits for the claim (`prewarm claim --wait`) knows to wait for them too."""
    pod = rt.pod(claim.namespace, workspace)
    agents = pod_agents(pod.annotations) if pod is not None else ()
    if not agents:
        return status  # no agent, or the pod not in the index yet: the next pass says
    wanted = reinit_pending(agents, generation)
    conditions = set_condition(
        status.conditions, reasons.REINITIALIZED, wanted.status, wanted.reason, wanted.message,
        None, now,
    )  # fmt: skip
    return status.model_copy(update={"conditions": conditions})


def _rebound(status: WorkspaceClaimStatus, now: datetime) -> WorkspaceClaimStatus:
    """The status with WorkspaceLost back to False, if the claim had lost one."""
    lost = get_condition(status.conditions, reasons.WORKSPACE_LOST)
    if lost is None or lost.status != "True":
        return status
    conditions = set_condition(
        status.conditions,
        reasons.WORKSPACE_LOST,
        "False",
        reasons.REASON_REBOUND,
        f"bound again after: {lost.message}",
        None,
        now.replace(microsecond=0),
    )
    return status.model_copy(update={"conditions": conditions})
