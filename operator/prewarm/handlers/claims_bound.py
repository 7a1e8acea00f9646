"""The passes of a Bound claim: it still has its workspace (or its take
comes now, or it lost it and its onWorkspaceLost applies), its lifetime, its
pod knowing its owner, and its Reinitialized condition following the pod's
agents."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from prewarm import metrics
from prewarm.api import reasons
from prewarm.api.claim import ClaimPhase, WorkspaceClaimStatus
from prewarm.api.conditions import get_condition, set_condition
from prewarm.api.constants import ANNOTATION_REINIT_GENERATION
from prewarm.api.durations import format_duration
from prewarm.api.timestamps import rfc3339
from prewarm.handlers.claim_take import TAKE_RETRY_S, take_and_hand_over
from prewarm.handlers.claim_writes import (
    annotate_pod,
    copy_owner_credentials,
    event,
    fail,
    patch_claim,
    utc_now,
)
from prewarm.handlers.runtime import Runtime
from prewarm.handlers.watched import ClaimEntry, WorkspaceEntry
from prewarm.planning.claim_parameters import resolve_parameters
from prewarm.planning.claims import BoundStep, Held, Kept, check_bound
from prewarm.planning.reinit import reinit_condition, reinit_progress
from prewarm.planning.render import claim_annotations

log = logging.getLogger("prewarm.claims")


async def check_workspace(
    rt: Runtime,
    claim: ClaimEntry,
    status: WorkspaceClaimStatus,
    ws: WorkspaceEntry | None,
    deadline: datetime | None,
) -> bool:
    """A Bound claim still has its workspace `ws` and pod (True); or its take
    has not landed and comes now; or it lost them and its spec.onWorkspaceLost
    is applied (False for both). Comes back when its lifetime ends."""
    name = status.workspace_name
    if not name:
        return True
    pod = rt.pod(claim.namespace, name)
    holder = ws.held_for(claim.uid) if ws is not None else Held.GONE
    key = (claim.namespace, claim.name)
    if holder is not Held.FREE and rt.promised.get(name) == key:
        del rt.promised[name]  # taken (by it or another), or gone: nothing to keep
    step = check_bound(
        name,
        holder,
        pod is not None and not pod.deleting,
        claim.on_workspace_lost,
        deadline,
        utc_now(),
    )
    if step.action is Kept.FINISH_TAKE:
        assert ws is not None
        await _finish_take(rt, claim, status, ws)
        return False
    if step.action is Kept.KEEP:
        if step.requeue_after is not None:
            rt.requeue_claim_after((claim.namespace, claim.name), step.requeue_after)
        wanted = rfc3339(deadline, milliseconds=True) if deadline else None
        if claim.status.get("expiresAt") != wanted:
            # spec.lifetime or spec.shutdownAt changed since it was bound.
            await rt.kube.patch_claim_status(
                claim.namespace, claim.name, {"status": {"expiresAt": wanted}}
            )
        return True
    # Only its own workspace is the claim's to delete.
    await workspace_lost(rt, claim, status, ws if holder is Held.MINE else None, step)
    return False


async def _finish_take(
    rt: Runtime, claim: ClaimEntry, status: WorkspaceClaimStatus, ws: WorkspaceEntry
) -> None:
    """Bound, and its workspace still the pool's: its take (cut short by a
    crash, or it met a change) comes now, kept off by others meanwhile."""
    if ws.name in rt.reserved:
        # Another pass is on it (the pool deleting it?): look again in a moment.
        rt.requeue_claim_after((claim.namespace, claim.name), TAKE_RETRY_S)
        return
    preset = rt.preset((claim.namespace, claim.preset))
    spec = rt.parsed_spec(preset)[0] if preset is not None else None
    resolved = resolve_parameters(spec.claim_parameters, claim.parameters) if spec else None
    parameters = resolved.values if resolved is not None else ()
    generation = status.reinit_generation or ws.reinit_generation + 1
    with rt.reserving(ws.name):
        if await take_and_hand_over(rt, claim, ws, generation, parameters, spec):
            rt.promised.pop(ws.name, None)


async def workspace_lost(
    rt: Runtime,
    claim: ClaimEntry,
    status: WorkspaceClaimStatus,
    ws: WorkspaceEntry | None,
    step: BoundStep,
) -> None:
    """Delete what is left of the lost workspace (the claim owns it), say so,
    then fail the claim or send it back to Pending to bind another one."""
    name = status.workspace_name or ""
    now = utc_now()
    rt.memory.claim((claim.namespace, claim.name)).lost.add(name)
    if ws is not None and not ws.deleting:
        await rt.kube.delete_workspace(claim.namespace, name)
    policy = claim.on_workspace_lost
    ws_uid = ws.uid if ws else ""
    rt.writes.submit(
        f"claim {claim.name} lost {name}",
        lambda: rt.ledger.record_claim_workspace_lost(
            claim.uid, ws_uid, name, step.reason, policy.value, now
        ),
    )
    await event(rt, claim, "Warning", reasons.REASON_WORKSPACE_LOST, step.message)
    conditions = set_condition(
        status.conditions,
        reasons.WORKSPACE_LOST,
        "True",
        step.reason,
        step.message,
        None,
        now.replace(microsecond=0),
    )
    if get_condition(conditions, reasons.REINITIALIZED) is not None:
        conditions = set_condition(
            conditions, reasons.REINITIALIZED, "False", step.reason, step.message, None, now
        )
    lost = status.model_copy(update={"conditions": conditions})
    if step.action is Kept.FAIL:
        await fail(rt, claim, lost, reasons.REASON_WORKSPACE_LOST, step.message)
        return
    await patch_claim(
        rt,
        claim,
        lost,
        ClaimPhase.PENDING,
        reasons.REASON_WORKSPACE_LOST,
        step.message,
        extra={
            "workspaceName": None,
            "source": None,
            "reinitializedAt": None,
            "reinitGeneration": None,
            "rebinds": status.rebinds + 1,
        },
    )
    log.warning("claim %s/%s: %s", claim.namespace, claim.name, step.message)


async def expire(
    rt: Runtime,
    claim: ClaimEntry,
    status: WorkspaceClaimStatus,
    mine: WorkspaceEntry | None,
    deadline: datetime,
) -> None:
    """Its lifetime (or shutdownAt) ended: the workspace goes, the claim says Expired."""
    names = {n for n in (status.workspace_name, mine.name if mine else None) if n}
    for name in sorted(names):
        await rt.kube.delete_workspace(claim.namespace, name)
    when = rfc3339(deadline)
    if (
        claim.lifetime is not None
        and status.bound_at is not None
        and (claim.shutdown_at is None or status.bound_at + claim.lifetime <= claim.shutdown_at)
    ):
        why = f"spec.lifetime {format_duration(claim.lifetime)} after binding ended at {when}"
    else:
        why = f"spec.shutdownAt {when} has come"
    message = f"{why}; workspace {', '.join(sorted(names)) or '(none)'} deleted"
    await patch_claim(
        rt,
        claim,
        status,
        ClaimPhase.EXPIRED,
        reasons.REASON_EXPIRED,
        message,
        extra={"expiresAt": rfc3339(deadline, milliseconds=True)},
    )
    now = utc_now()
    rt.writes.submit(
        f"claim {claim.name} expired", lambda: rt.ledger.record_claim_expired(claim.uid, now)
    )
    await event(rt, claim, "Normal", reasons.REASON_EXPIRED, message)
    rt.memory.wait_for_warm((claim.namespace, claim.name), None)


async def ensure_pod_knows_owner(
    rt: Runtime, claim: ClaimEntry, status: WorkspaceClaimStatus, ws: WorkspaceEntry | None
) -> None:
    if not status.workspace_name or not status.reinit_generation:
        return
    pod = rt.pod(claim.namespace, status.workspace_name)
    if pod is None or pod.deleting:
        return
    if rt.memory.claim((claim.namespace, claim.name)).annotated == (
        pod.name,
        status.reinit_generation,
    ):
        return  # written by this process: the pod watch may not show it yet
    parameters = ws.claim_parameters if ws else ()
    wanted = claim_annotations(claim.owner, status.reinit_generation, parameters)
    if any(pod.annotations.get(k) != v for k, v in wanted.items()):
        if pod.annotations.get(ANNOTATION_REINIT_GENERATION) != str(status.reinit_generation):
            await copy_owner_credentials(rt, claim, pod.name, None)
        await annotate_pod(rt, claim, pod.name, status.reinit_generation, parameters)


async def check_reinitialized(rt: Runtime, claim: ClaimEntry, status: WorkspaceClaimStatus) -> None:
    """A Bound claim's Reinitialized condition follows its pod's agents
    (planning/reinit.py): pending, retrying, failed or done for its generation."""
    if status.reinitialized_at is not None or not status.workspace_name:
        return
    pod = rt.pod(claim.namespace, status.workspace_name)
    if pod is None:
        return
    generation = status.reinit_generation
    progress = reinit_progress(pod.annotations, generation)
    if progress is None:
        return  # no agent to wait for
    wanted = reinit_condition(progress, generation)
    current = get_condition(status.conditions, reasons.REINITIALIZED)
    if (
        current is not None
        and current.status.value == wanted.status
        and (current.reason, current.message) == (wanted.reason, wanted.message)
    ):
        return  # nothing new to say
    now = utc_now()
    conditions = set_condition(
        status.conditions,
        reasons.REINITIALIZED,
        wanted.status,
        wanted.reason,
        wanted.message,
        None,
        now,
    )
    patch: dict[str, Any] = {
        "conditions": [c.model_dump(by_alias=True, mode="json") for c in conditions]
    }
    if wanted.status == "True":
        patch["reinitializedAt"] = rfc3339(now, milliseconds=True)
    await rt.kube.patch_claim_status(claim.namespace, claim.name, {"status": patch})
    if wanted.failed:
        metrics.claim_reinit_failures.labels(claim.namespace, claim.preset, wanted.reason).inc()
        await event(rt, claim, "Warning", wanted.reason, wanted.event)
    if wanted.status == "True":
        reinitialized(rt, claim, status, now)


def reinitialized(
    rt: Runtime, claim: ClaimEntry, status: WorkspaceClaimStatus, now: datetime
) -> None:
    """Every agent is done: the latency since this binding, and the ledger."""
    bound = get_condition(status.conditions, reasons.BOUND)
    starts = [t for t in (status.bound_at, bound and bound.last_transition_time) if t]
    if starts:
        seconds = max(0.0, (now - max(starts)).total_seconds())
        metrics.claim_reinit_seconds.labels(claim.namespace, claim.preset).observe(seconds)
    rt.writes.submit(
        f"claim {claim.name} reinitialized",
        lambda: rt.ledger.record_claim_reinitialized(claim.uid, now),
    )
