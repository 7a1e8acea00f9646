"""The prewarm.dev/v1alpha1 API: models mirroring the CRDs, and pure helpers.

Imports no I/O library; `planning` and everything else can depend on it.
"""

from prewarm.api.base import ApiModel, LocalObjectReference, ObjectMeta, OwnerReference
from prewarm.api.claim import (
    ClaimPhase,
    ClaimSource,
    OnWorkspaceLost,
    WorkspaceClaim,
    WorkspaceClaimSpec,
    WorkspaceClaimStatus,
)
from prewarm.api.conditions import (
    Condition,
    ConditionStatus,
    get_condition,
    is_true,
    remove_condition,
    set_condition,
)
from prewarm.api.durations import Duration, PositiveDuration, format_duration, parse_duration
from prewarm.api.hashing import template_hash
from prewarm.api.preset import (
    Agent,
    ClaimDefaults,
    FailurePolicy,
    LastFailure,
    Parameter,
    PodTemplate,
    Prebuilds,
    PrebuildStatus,
    Preset,
    PresetSpec,
    PresetStatus,
    Schedule,
    TemplateMetadata,
    WorkspacePodSpec,
    pool_selector,
)
from prewarm.api.workspace import (
    ClaimReference,
    PrebuiltWorkspace,
    PrebuiltWorkspaceSpec,
    PrebuiltWorkspaceStatus,
    WorkspaceFailure,
    WorkspacePhase,
)

__all__ = [
    "Agent",
    "ApiModel",
    "ClaimDefaults",
    "ClaimPhase",
    "ClaimReference",
    "ClaimSource",
    "Condition",
    "ConditionStatus",
    "Duration",
    "FailurePolicy",
    "LastFailure",
    "LocalObjectReference",
    "ObjectMeta",
    "OnWorkspaceLost",
    "OwnerReference",
    "Parameter",
    "PodTemplate",
    "PositiveDuration",
    "PrebuildStatus",
    "Prebuilds",
    "PrebuiltWorkspace",
    "PrebuiltWorkspaceSpec",
    "PrebuiltWorkspaceStatus",
    "Preset",
    "PresetSpec",
    "PresetStatus",
    "Schedule",
    "TemplateMetadata",
    "WorkspaceClaim",
    "WorkspaceClaimSpec",
    "WorkspaceClaimStatus",
    "WorkspaceFailure",
    "WorkspacePhase",
    "WorkspacePodSpec",
    "format_duration",
    "get_condition",
    "is_true",
    "parse_duration",
    "pool_selector",
    "remove_condition",
    "set_condition",
    "template_hash",
]
