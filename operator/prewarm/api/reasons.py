"""Condition types, condition reasons and Event reasons.

One vocabulary for conditions, Events, the ledger and metrics labels, so a
reason seen in `kubectl describe` can be grepped in logs and dashboards.
Reasons are CamelCase as metav1.Condition requires.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

# Condition types.
READY: Final = "Ready"
PROGRESSING: Final = "Progressing"
HARD_LIMITED: Final = "HardLimited"
VALIDATION_FAILED: Final = "ValidationFailed"
PAUSED: Final = "Paused"
BOUND: Final = "Bound"
REINITIALIZED: Final = "Reinitialized"
DEGRADED: Final = "Degraded"
QUOTA_EXCEEDED: Final = "QuotaExceeded"
SCHEDULE_INVALID: Final = "ScheduleInvalid"
CREATE_REFUSED: Final = "CreateRefused"
WORKSPACE_LOST: Final = "WorkspaceLost"

CONDITION_TYPES: Final = frozenset(
    {
        READY,
        PROGRESSING,
        HARD_LIMITED,
        VALIDATION_FAILED,
        PAUSED,
        BOUND,
        REINITIALIZED,
        DEGRADED,
        QUOTA_EXCEEDED,
        SCHEDULE_INVALID,
        CREATE_REFUSED,
        WORKSPACE_LOST,
    }
)

# Preset pool reasons (conditions and Events).
REASON_POOL_READY: Final = "PoolReady"
REASON_SCALING_UP: Final = "ScalingUp"
REASON_SCALING_DOWN: Final = "ScalingDown"
REASON_ROLLING_OUT: Final = "RollingOut"
REASON_ROLLOUT_BLOCKED: Final = "RolloutBlocked"  # the new template cannot be built; the old serves
REASON_PREBUILD_FAILURE_LIMIT_REACHED: Final = "PrebuildFailureLimitReached"
REASON_PREBUILD_FAILED: Final = "PrebuildFailed"  # the Warning Event of one failed build
REASON_PREBUILD_RETRY_REQUESTED: Final = "PrebuildRetryRequested"
REASON_HARD_LIMIT_RESET: Final = "HardLimitReset"
REASON_VALIDATION_FAILED: Final = "ValidationFailed"
REASON_TEMPLATE_VALID: Final = "TemplateValid"
REASON_INVALID_SCHEDULE: Final = "InvalidSchedule"  # the Warning Event of a schedule problem
REASON_UNKNOWN_TIMEZONE: Final = "UnknownTimezone"
REASON_INVALID_CRON: Final = "InvalidCron"
REASON_CRON_NEVER_FIRES: Final = "CronNeverFires"
REASON_SCHEDULE_VALID: Final = "ScheduleValid"
REASON_PAUSED_BY_ANNOTATION: Final = "PausedByAnnotation"
REASON_PAUSED_BY_OPERATOR: Final = "PausedByOperator"
REASON_RESUMED: Final = "Resumed"
REASON_LEDGER_UNAVAILABLE: Final = "LedgerUnavailable"
REASON_LEDGER_AVAILABLE: Final = "LedgerAvailable"
REASON_STABLE: Final = "Stable"
REASON_BELOW_LIMIT: Final = "BelowLimit"
REASON_QUOTA_EXCEEDED: Final = "QuotaExceeded"
REASON_WITHIN_QUOTA: Final = "WithinQuota"
# The API server refused to create a PrebuiltWorkspace (not its pod): a policy,
# a missing permission, an invalid object. Retried with backoff, never a build.
REASON_WORKSPACE_CREATE_REFUSED: Final = "WorkspaceCreateRefused"
REASON_CREATES_ACCEPTED: Final = "CreatesAccepted"


# Why one prebuild failed (a workspace's status.failure.reason, the ledger's
# failure_reason, the prewarm_prebuilds_failed reason label).
class FailureReason(StrEnum):
    POD_FAILED = "PodFailed"
    POD_SUCCEEDED = "PodExited"
    IMAGE_PULL = "ImagePullFailed"
    INVALID_IMAGE = "InvalidImageName"
    CONTAINER_CONFIG = "CreateContainerConfigError"
    CRASH_LOOP = "CrashLoop"
    UNSCHEDULABLE = "Unschedulable"
    READINESS_TIMEOUT = "ReadinessTimeout"
    POD_REJECTED = "PodRejected"
    POD_MISSING = "PodMissing"
    CONTAINERS_NOT_STARTED = "ContainersNotStarted"


# Why a workspace was lost to its infrastructure rather than its own fault (a
# workspace's status.failure.reason with phase Disrupted, the ledger's
# disruption_reason, the prewarm_prebuilds_disrupted reason label). Never a
# build failure: no backoff, no step toward the hard limit.
class DisruptionReason(StrEnum):
    EVICTED = "Evicted"  # the kubelet (node pressure) or the Eviction API (a drain)
    PREEMPTED = "Preempted"  # the scheduler made room for a higher priority
    NODE_LOST = "NodeLost"  # its node went away or shut down
    POD_DELETED = "PodDeleted"  # someone or something deleted its pod
    LOST_READINESS = "LostReadiness"  # Ready once, then not Ready for the readiness timeout
    UNSCHEDULABLE = "Unschedulable"  # no node had room for the whole readiness timeout


# Claim reasons.
REASON_CLAIMED_PREBUILT: Final = "ClaimedPrebuilt"
REASON_COLD_START: Final = "ColdStart"
REASON_PRESET_NOT_FOUND: Final = "PresetNotFound"
REASON_SECRET_NOT_FOUND: Final = "SecretNotFound"
REASON_PRESET_VALIDATION_FAILED: Final = "PresetValidationFailed"
REASON_PRESET_HARD_LIMITED: Final = "PresetHardLimited"
REASON_CLAIM_FAILED: Final = "ClaimFailed"
REASON_REINIT_SUCCEEDED: Final = "ReinitSucceeded"
REASON_REINIT_PENDING: Final = "ReinitPending"  # Unknown: an agent has not reported yet
REASON_REINIT_RETRYING: Final = "ReinitRetrying"  # False: a hook run failed, the agent retries
REASON_REINIT_FAILED: Final = "ReinitFailed"  # False: the agent gave up (the last run failed)
REASON_REINIT_TIMED_OUT: Final = "ReinitTimedOut"  # False: gave up, the last run timed out
REASON_WORKSPACE_DELETED: Final = "WorkspaceDeleted"  # WorkspaceLost: the workspace went
REASON_POD_DELETED: Final = "PodDeleted"  # WorkspaceLost: its pod went
# WorkspaceLost: the workspace a claim bound went to another claim, or stopped
# being Ready, before the claim's take (it binds first, then takes)
REASON_WORKSPACE_UNAVAILABLE: Final = "WorkspaceUnavailable"
REASON_WORKSPACE_LOST: Final = "WorkspaceLost"  # the Event, and the reason a claim fails or rebinds
REASON_REBOUND: Final = "Rebound"  # WorkspaceLost back to False: a new workspace is bound
REASON_EXPIRED: Final = "Expired"  # its lifetime or shutdownAt came: the workspace was deleted
REASON_INVALID_PARAMETERS: Final = "InvalidParameters"  # spec.parameters do not fit the preset
REASON_WAITING_FOR_WARM: Final = "WaitingForWarm"  # within coldStartGrace, a warm one is starting
