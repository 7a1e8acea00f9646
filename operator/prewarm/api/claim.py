"""WorkspaceClaim: a user's request for a workspace of a preset."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from prewarm.api.base import ApiModel, LocalObjectReference, ObjectMeta, Timestamp
from prewarm.api.claim_parameters import MAX_CLAIM_PARAMETERS
from prewarm.api.conditions import Condition
from prewarm.api.constants import API_VERSION, KIND_WORKSPACE_CLAIM
from prewarm.api.durations import Duration, PositiveDuration
from prewarm.api.preset import Parameter


class ClaimPhase(StrEnum):
    PENDING = "Pending"
    BOUND = "Bound"
    FAILED = "Failed"
    EXPIRED = "Expired"  # its lifetime ended: the workspace was deleted


class OnWorkspaceLost(StrEnum):
    """What a Bound claim does when its workspace or pod is deleted."""

    REBIND = "Rebind"  # take another warm workspace (or build one) for the same owner
    FAIL = "Fail"  # the claim fails with reason WorkspaceLost


class ClaimSource(StrEnum):
    """Where the bound workspace came from: the warm pool, or built on demand."""

    PREBUILT = "prebuilt"
    COLD = "cold"


class WorkspaceClaimSpec(ApiModel):
    preset_ref: LocalObjectReference
    owner: str = Field(min_length=1, max_length=256)
    owner_secret_ref: LocalObjectReference | None = None
    on_workspace_lost: OnWorkspaceLost = OnWorkspaceLost.REBIND
    lifetime: PositiveDuration | None = None
    shutdown_at: Timestamp | None = None
    fresh: bool = False
    cold_start_grace: Duration | None = None
    # Values for the preset's spec.claimParameters; checked against them by the operator.
    parameters: list[Parameter] = Field(default_factory=list, max_length=MAX_CLAIM_PARAMETERS)


class WorkspaceClaimStatus(ApiModel):
    phase: ClaimPhase | None = None
    workspace_name: str | None = None
    source: ClaimSource | None = None
    requested_at: Timestamp | None = None
    bound_at: Timestamp | None = None
    reinitialized_at: Timestamp | None = None
    reinit_generation: int = Field(default=0, ge=0)
    expires_at: Timestamp | None = None
    rebinds: int = Field(default=0, ge=0)
    conditions: list[Condition] = Field(default_factory=list)


class WorkspaceClaim(ApiModel):
    api_version: str = API_VERSION
    kind: str = KIND_WORKSPACE_CLAIM
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: WorkspaceClaimSpec
    status: WorkspaceClaimStatus = Field(default_factory=WorkspaceClaimStatus)
