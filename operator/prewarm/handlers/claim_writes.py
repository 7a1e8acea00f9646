"""What a claim's passes write besides the take: the claim's status and
Events, and the workspace pod's owner annotations and credentials. Shared by
the pass of a new claim (handlers/claims.py) and of a Bound one
(handlers/claims_bound.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prewarm.api import reasons
from prewarm.api.claim import ClaimPhase, WorkspaceClaimStatus
from prewarm.api.conditions import set_condition
from prewarm.api.constants import API_VERSION, KIND_WORKSPACE_CLAIM, LABEL_CLAIM
from prewarm.api.preset import PresetSpec
from prewarm.api.timestamps import rfc3339
from prewarm.handlers.runtime import Runtime
from prewarm.handlers.watched import ClaimEntry
from prewarm.handlers.workspaces import copy_owner_secret
from prewarm.k8s.client import ApiError
from prewarm.k8s.events import EventType, post_event
from prewarm.planning.render import claim_annotations


def utc_now() -> datetime:
    return datetime.now(UTC)


async def annotate_pod(
    rt: Runtime,
    claim: ClaimEntry,
    pod: str,
    generation: int,
    parameters: tuple[tuple[str, str], ...],
) -> None:
    await rt.kube.patch_pod(
        claim.namespace,
        pod,
        {
            "metadata": {
                "labels": {LABEL_CLAIM: claim.name},
                "annotations": claim_annotations(claim.owner, generation, parameters),
            }
        },
    )
    rt.memory.claim((claim.namespace, claim.name)).annotated = (pod, generation)


async def copy_owner_credentials(
    rt: Runtime, claim: ClaimEntry, workspace: str, spec: PresetSpec | None
) -> None:
    """The claim's credentials into `<ws>-owner` (idempotent) before the pod learns
    a generation it has not seen: by the take, and again by the pass that finishes
    a take cut off before it (an operator killed right after it), so the agent
    never runs the hook for the claim without them."""
    if not claim.owner_secret:
        return
    if spec is None:
        preset = rt.preset((claim.namespace, claim.preset))
        spec = rt.parsed_spec(preset)[0] if preset is not None else None
    if spec is not None and spec.agent.on_claim:
        await copy_owner_secret(rt, claim.namespace, claim.owner_secret, workspace)


async def fail(
    rt: Runtime, claim: ClaimEntry, status: WorkspaceClaimStatus, reason: str, message: str
) -> None:
    await patch_claim(rt, claim, status, ClaimPhase.FAILED, reason, message)
    failed_at = utc_now()
    rt.writes.submit(
        f"claim {claim.name} failed",
        lambda: rt.ledger.record_claim_failed(claim.uid, reason, failed_at),
    )
    # A claim fails once: a pass that ran before the watch showed Failed must
    # not post it again (post_event's once_key, as for the preset's episodes).
    await event(rt, claim, "Warning", reasons.REASON_CLAIM_FAILED, f"{reason}: {message}", "failed")
    rt.memory.claim((claim.namespace, claim.name)).seen_at = None


async def patch_claim(
    rt: Runtime,
    claim: ClaimEntry,
    status: WorkspaceClaimStatus,
    phase: ClaimPhase,
    reason: str,
    message: str,
    extra: dict[str, Any] | None = None,
) -> None:
    now = utc_now()
    conditions = set_condition(
        status.conditions,
        reasons.BOUND,
        "True" if phase is ClaimPhase.BOUND else "False",
        reason,
        message,
        None,
        now.replace(microsecond=0),
    )
    wanted: dict[str, Any] = {
        "phase": phase.value,
        "conditions": [c.model_dump(by_alias=True, mode="json") for c in conditions],
        **(extra or {}),
    }
    if status.requested_at is None:
        wanted["requestedAt"] = rfc3339(now, milliseconds=True)
    current = {k: claim.status.get(k) for k in wanted if k != "requestedAt"}
    if all(current[k] == v for k, v in wanted.items() if k != "requestedAt") and (
        status.requested_at is not None
    ):
        return  # nothing new to say
    try:
        await rt.kube.patch_claim_status(claim.namespace, claim.name, {"status": wanted})
    except ApiError as error:
        if not error.not_found:
            raise


async def event(
    rt: Runtime,
    claim: ClaimEntry,
    type_: EventType,
    reason: str,
    message: str,
    once_key: str | None = None,
) -> None:
    await post_event(
        rt.kube,
        api_version=API_VERSION,
        kind=KIND_WORKSPACE_CLAIM,
        namespace=claim.namespace,
        name=claim.name,
        uid=claim.uid,
        type_=type_,
        reason=reason,
        message=message,
        once_key=once_key,
    )
