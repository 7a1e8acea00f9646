"""The take: the one conditional write that makes a warm workspace a claim's,
and the hand-over that follows it (the owner's credentials, the pod's
annotations the agent waits for).

A claim binds first and takes right after (docs/decisions.md, "A claim binds
first"): the pass of a new claim takes in the same pass as its Bound
(handlers/claims.py), and a Bound claim whose take did not land (a crash
between the two, a conflict) takes on a later pass (handlers/claims_bound.py).
While a take is in flight its workspace's name is in `Runtime.reserved`, and
after a take that met a change, in `Runtime.promised` until the claim's next
pass: other claims pass it by, and the pool neither writes nor deletes it.
"""

from __future__ import annotations

from typing import Any

from prewarm import metrics
from prewarm.api.constants import KIND_WORKSPACE_CLAIM, LABEL_CLAIM
from prewarm.api.preset import PresetSpec
from prewarm.handlers.claim_writes import annotate_pod, copy_owner_credentials
from prewarm.handlers.runtime import Runtime
from prewarm.handlers.watched import ClaimEntry, WorkspaceEntry
from prewarm.k8s.client import ApiError
from prewarm.planning.render import owner_reference, parameter_list

# How soon a claim whose take met a changed workspace looks again (the watch
# usually shows the change well within it; its Bound event wakes it too).
TAKE_RETRY_S = 0.2


async def take_and_hand_over(
    rt: Runtime,
    claim: ClaimEntry,
    ws: WorkspaceEntry,
    generation: int,
    parameters: tuple[tuple[str, str], ...],
    spec: PresetSpec | None,
) -> bool:
    """Take `ws` for the Bound `claim` (conditional on the version read), then
    hand it over. False if the workspace changed or went since it was read:
    the claim's next pass finds it free (and takes it), another claim's, or gone."""
    try:
        taken = await rt.kube.patch_workspace(
            claim.namespace, ws.name, take_patch(claim, ws, parameters)
        )
    except ApiError as error:
        if error.conflict or error.not_found or error.status == 422:
            key = (claim.namespace, claim.name)
            if not error.not_found:
                # Changed since read, but maybe still free: kept for this claim
                # until its next pass looks (handlers/claims_bound.py).
                rt.promised[ws.name] = key
            rt.requeue_claim_after(key, TAKE_RETRY_S)
            return False
        raise
    # Before the reservation ends: a claim deciding before the watch shows the
    # take would see the workspace free, bind it, and lose it.
    rt.workspace_written(taken, ws.resource_version)
    # The credentials before the pod learns the generation: the agent runs
    # the hook once it sees it, and must find them.
    await copy_owner_credentials(rt, claim, ws.name, spec)
    await annotate_pod(rt, claim, ws.name, generation, parameters)
    metrics.prebuilds_claimed.labels(claim.namespace, claim.preset).inc()
    return True


def take_patch(
    claim: ClaimEntry, ws: WorkspaceEntry, parameters: tuple[tuple[str, str], ...]
) -> dict[str, Any]:
    """The one conditional write that makes a warm workspace the claim's."""
    spec: dict[str, Any] = {
        "owner": claim.owner,
        "claimRef": {"name": claim.name, "uid": claim.uid},
    }
    if parameters:
        spec["claimParameters"] = parameter_list(parameters)
    return {
        "metadata": {
            "resourceVersion": ws.resource_version,
            "labels": {LABEL_CLAIM: claim.name},
            "ownerReferences": [owner_reference(KIND_WORKSPACE_CLAIM, claim.name, claim.uid)],
        },
        "spec": spec,
    }
