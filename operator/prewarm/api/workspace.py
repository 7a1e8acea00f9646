"""PrebuiltWorkspace: one pool instance; owns exactly one Pod."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from prewarm.api.base import ApiModel, LocalObjectReference, ObjectMeta, Timestamp
from prewarm.api.conditions import Condition
from prewarm.api.constants import API_VERSION, KIND_PREBUILT_WORKSPACE
from prewarm.api.patterns import TEMPLATE_HASH_PATTERN
from prewarm.api.preset import Parameter


class WorkspacePhase(StrEnum):
    PENDING = "Pending"
    BUILDING = "Building"
    READY = "Ready"
    CLAIMED = "Claimed"
    FAILED = "Failed"  # a build failure of its own: counts toward backoff and the hard limit
    DISRUPTED = "Disrupted"  # lost to its infrastructure: replaced, never counted


class ClaimReference(ApiModel):
    """The WorkspaceClaim that took this workspace; the uid guards against a re-created namesake."""

    name: str = Field(min_length=1, max_length=253)
    uid: str = Field(min_length=1, max_length=64)


class PrebuiltWorkspaceSpec(ApiModel):
    preset_ref: LocalObjectReference
    template_hash: str = Field(pattern=TEMPLATE_HASH_PATTERN)
    owner: str = Field(default="", max_length=256)
    claim_ref: ClaimReference | None = None
    # The claim's parameters, the preset's defaults filled in: set once with
    # owner and claimRef, what the pod's agent hands the hook.
    claim_parameters: list[Parameter] = Field(default_factory=list, max_length=64)

    @property
    def is_claimed(self) -> bool:
        return self.owner != ""


class WorkspaceWaiting(ApiModel):
    """What a Building workspace waits for, as the scheduler or the kubelet says it."""

    reason: str
    message: str = ""


class WorkspaceFailure(ApiModel):
    """Why this instance failed (a prewarm.api.reasons.FailureReason) or was
    disrupted (a DisruptionReason)."""

    reason: str
    message: str = ""


class PrebuiltWorkspaceStatus(ApiModel):
    phase: WorkspacePhase | None = None
    pod_name: str | None = None
    ready_at: Timestamp | None = None
    claimed_at: Timestamp | None = None
    failed_at: Timestamp | None = None
    owner: str | None = None
    reinit_generation: int = Field(default=0, ge=0)
    failure: WorkspaceFailure | None = None
    waiting: WorkspaceWaiting | None = None
    conditions: list[Condition] = Field(default_factory=list)


class PrebuiltWorkspace(ApiModel):
    api_version: str = API_VERSION
    kind: str = KIND_PREBUILT_WORKSPACE
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PrebuiltWorkspaceSpec
    status: PrebuiltWorkspaceStatus = Field(default_factory=PrebuiltWorkspaceStatus)


def workspace_status_patch(
    status: PrebuiltWorkspaceStatus, resource_version: str = ""
) -> dict[str, Any]:
    """The merge patch that writes `status` (fields left at their defaults are
    not written); with `resource_version` it is conditional on that version.
    Every write of a workspace's status goes through here."""
    patch: dict[str, Any] = {
        "status": status.model_dump(by_alias=True, mode="json", exclude_defaults=True)
    }
    if status.phase not in (None, WorkspacePhase.BUILDING) and status.waiting is None:
        patch["status"]["waiting"] = None  # a merge patch's null: it waits for nothing now
    if resource_version:
        patch["metadata"] = {"resourceVersion": resource_version}
    return patch
