"""Preset: the pool definition (a pod template, its parameters, how many warm copies)."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from prewarm.api.agent_protocol import MAX_AGENT_CONTAINER_NAME
from prewarm.api.base import ApiModel, ObjectMeta, Timestamp
from prewarm.api.claim_parameters import MAX_CLAIM_PARAMETERS, ClaimParameter
from prewarm.api.conditions import Condition
from prewarm.api.constants import API_VERSION, KIND_PRESET, LABEL_PRESET
from prewarm.api.durations import Duration, PositiveDuration
from prewarm.api.patterns import (
    CRON_MAX_LENGTH,
    CRON_PATTERN,
    PARAMETER_NAME_MAX_LENGTH,
    PARAMETER_NAME_PATTERN,
    TIMEZONE_MAX_LENGTH,
    TIMEZONE_PATTERN,
)


class PrebuildStatus(StrEnum):
    """Whether the operator is creating prebuilds for a preset."""

    NORMAL = "Normal"
    HARD_LIMITED = "HardLimited"
    VALIDATION_FAILED = "ValidationFailed"


class PodSecurity(StrEnum):
    """How much of the restricted Pod Security Standard the operator fills in."""

    RESTRICTED = "Restricted"
    TEMPLATE = "Template"


class TemplateMetadata(ApiModel):
    """Labels and annotations copied onto every workspace pod."""

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class WorkspacePodSpec(ApiModel):
    """A full core/v1 PodSpec. Only `containers` is modelled; the rest is kept as is.

    The API server validates the pod itself (server-side dry-run), so the
    operator need not know every PodSpec field to pass them through.
    """

    model_config = ConfigDict(extra="allow")

    containers: list[dict[str, Any]] = Field(min_length=1)


class PodTemplate(ApiModel):
    """The workspace: a PodTemplateSpec."""

    metadata: TemplateMetadata = Field(default_factory=TemplateMetadata)
    spec: WorkspacePodSpec


class Parameter(ApiModel):
    """One name/value handed to the workspace as an env var and annotation."""

    name: str = Field(max_length=PARAMETER_NAME_MAX_LENGTH, pattern=PARAMETER_NAME_PATTERN)
    value: str = Field(default="", max_length=4096)


class Schedule(ApiModel):
    """While `cron` matches the current minute, keep `instances` warm instead of the default."""

    cron: str = Field(max_length=CRON_MAX_LENGTH, pattern=CRON_PATTERN)
    instances: int = Field(ge=0)


class Autoscale(ApiModel):
    """Demand mode: the warm count from claim arrivals and build times
    (docs/concepts.md, "Demand mode"), within [min, max]."""

    min: int = Field(default=0, ge=0)
    max: int = Field(ge=0)
    # The chance a claim finds no Ready workspace that the count aims below.
    target_miss_ratio: float = Field(default=0.05, gt=0, lt=1)
    # How far back claim arrivals are counted.
    window: PositiveDuration = timedelta(minutes=15)
    # The count is the highest the model wanted during this long before.
    scale_down_delay: Duration = timedelta(minutes=5)

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Self:
        if self.min > self.max:
            raise ValueError("autoscale.min must be less than or equal to autoscale.max")
        return self


class Prebuilds(ApiModel):
    """How many warm instances to keep, when, and for how long."""

    instances: int = Field(default=0, ge=0)
    schedules: list[Schedule] = Field(default_factory=list, max_length=32)
    timezone: str = Field(default="UTC", max_length=TIMEZONE_MAX_LENGTH, pattern=TIMEZONE_PATTERN)
    ttl: PositiveDuration | None = None
    # Set: demand mode decides the count (instances, and so kubectl scale, is ignored).
    autoscale: Autoscale | None = None


# maxSurge / maxUnavailable: a count or a percentage of the desired count.
IntOrPercent = Annotated[int, Field(ge=0)] | Annotated[str, Field(pattern=r"^(100|[1-9]?[0-9])%$")]


class Rollout(ApiModel):
    """How stale warm workspaces (an older template, created before
    replaceCreatedBefore, or past their ttl) are replaced: like a Deployment's
    rolling update, so claims keep finding warm workspaces meanwhile."""

    max_surge: IntOrPercent = "25%"
    max_unavailable: IntOrPercent = 0
    replace_created_before: Timestamp | None = None


class FailurePolicy(ApiModel):
    """When to stop retrying a preset whose prebuilds fail. Unset fields use operator settings."""

    hard_limit: int | None = Field(default=None, ge=0)
    # Failed workspaces of the current template kept (newest first) for inspection.
    failed_to_keep: int | None = Field(default=None, ge=0)
    backoff_base: Duration | None = None
    backoff_max: Duration | None = None
    readiness_timeout: PositiveDuration | None = None

    @model_validator(mode="after")
    def _max_not_below_base(self) -> Self:
        if (
            self.backoff_base is not None
            and self.backoff_max is not None
            and self.backoff_max < self.backoff_base
        ):
            raise ValueError("backoffMax must be greater than or equal to backoffBase")
        return self


class Agent(ApiModel):
    """What the in-pod agent does when a warm workspace is claimed."""

    on_claim: list[str] = Field(default_factory=list, max_length=64)
    image: str | None = Field(default=None, max_length=1024)
    # The containers the hook runs in (exec); empty: the template's first container.
    containers: list[str] = Field(default_factory=list, max_length=8)

    @field_validator("containers")
    @classmethod
    def _unique_short_names(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("agent.containers names a container twice")
        for name in names:
            if not 0 < len(name) <= MAX_AGENT_CONTAINER_NAME:
                raise ValueError(
                    f"agent.containers: {name!r} must have 1 to {MAX_AGENT_CONTAINER_NAME} "
                    "characters (it is part of an annotation key)"
                )
        return names


class ClaimDefaults(ApiModel):
    """How claims of this preset behave unless the claim says otherwise."""

    cold_start_grace: Duration | None = None


class PresetSpec(ApiModel):
    template: PodTemplate
    parameters: list[Parameter] = Field(default_factory=list, max_length=64)
    prebuilds: Prebuilds = Field(default_factory=Prebuilds)
    failure_policy: FailurePolicy = Field(default_factory=FailurePolicy)
    rollout: Rollout = Field(default_factory=Rollout)
    agent: Agent = Field(default_factory=Agent)
    claims: ClaimDefaults = Field(default_factory=ClaimDefaults)
    # What a claim may set (its spec.parameters); never part of the pod or the hash.
    claim_parameters: list[ClaimParameter] = Field(
        default_factory=list, max_length=MAX_CLAIM_PARAMETERS
    )
    pod_security: PodSecurity = PodSecurity.RESTRICTED

    @model_validator(mode="after")
    def _agent_containers_exist(self) -> Self:
        names = {str(c.get("name", "")) for c in self.template.spec.containers}
        missing = [n for n in self.agent.containers if n not in names]
        if missing:
            raise ValueError(f"agent.containers: no container named {', '.join(missing)}")
        if any(len(n) > MAX_AGENT_CONTAINER_NAME for n in self.hook_containers()):
            raise ValueError(
                f"the onClaim hook runs in the first container, whose name is longer than "
                f"{MAX_AGENT_CONTAINER_NAME} characters: name a shorter one in agent.containers"
            )
        return self

    def hook_containers(self) -> list[str]:
        """The containers the onClaim hook runs in: agent.containers, else the first one."""
        if not self.agent.on_claim:
            return []
        return list(self.agent.containers) or [str(self.template.spec.containers[0]["name"])]

    @field_validator("parameters", "claim_parameters")
    @classmethod
    def _unique_parameter_names(cls, parameters: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for parameter in parameters:
            if parameter.name in seen:
                raise ValueError(f"duplicate parameter name {parameter.name!r}")
            seen.add(parameter.name)
        return parameters


class LastFailure(ApiModel):
    """The most recent failed prebuild of the preset."""

    reason: str
    message: str = ""
    time: Timestamp | None = None


class AutoscaleStatus(ApiModel):
    """What demand mode saw and chose (present while spec.prebuilds.autoscale is set)."""

    decided_by: str  # Autoscale | Schedule: who set status.desired
    reason: str  # planning/autoscale.AutoscaleReason
    message: str = ""
    recommended: int = 0  # the model's count before the scale-down delay
    arrivals_per_minute: float | None = None
    build_seconds_p50: float | None = None
    build_seconds_p90: float | None = None
    # Claim bound -> replacement Ready of the latest warm claims, p90.
    slot_seconds_p90: float | None = None
    predicted_miss_ratio: float | None = None
    # Claims in the window that found no warm workspace, and all of them.
    window_misses: int | None = None
    window_claims: int | None = None
    observed_at: Timestamp | None = None  # when the ledger was read


class PresetStatus(ApiModel):
    observed_generation: int | None = None
    template_hash: str | None = None
    desired: int = 0
    running: int = 0
    ready: int = 0
    starting: int = 0
    claimed: int = 0
    failed: int = 0
    # Warm workspaces being replaced (spec.rollout) that still serve claims.
    outdated: int = 0
    # The template the pool is rolling away from: its warm workspaces may
    # still be claimed until their replacements are Ready.
    previous_template_hash: str | None = None
    prebuild_status: PrebuildStatus | None = None
    summary: str | None = None  # the STATUS column: prebuildStatus, or a problem while Normal
    paused: bool = False
    backoff_until: Timestamp | None = None
    last_failure: LastFailure | None = None
    selector: str | None = None
    autoscale: AutoscaleStatus | None = None
    conditions: list[Condition] = Field(default_factory=list)


class Preset(ApiModel):
    api_version: str = API_VERSION
    kind: str = KIND_PRESET
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PresetSpec
    status: PresetStatus = Field(default_factory=PresetStatus)


def pool_selector(preset_name: str) -> str:
    """The label selector of a preset's workspaces; published as status.selector for HPA/scale."""
    return f"{LABEL_PRESET}={preset_name}"
