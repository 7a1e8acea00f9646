"""Condition types, condition reasons and Event reasons.

One vocabulary for conditions, Events, the ledger and metrics labels, so a
reason seen in `kubectl describe` can be grepped in logs and dashboards.
Reasons are CamelCase as metav1.Condition requires.
"""

from __future__ import annotations

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
    }
)

# Preset pool reasons (conditions and Events).
REASON_POOL_READY: Final = "PoolReady"
REASON_SCALING_UP: Final = "ScalingUp"
REASON_SCALING_DOWN: Final = "ScalingDown"
REASON_ROLLING_OUT: Final = "RollingOut"
REASON_BACKOFF: Final = "Backoff"
REASON_PREBUILD_FAILURE_LIMIT_REACHED: Final = "PrebuildFailureLimitReached"
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
REASON_QUOTA_EXCEEDED: Final = "QuotaExceeded"
REASON_WITHIN_QUOTA: Final = "WithinQuota"

# Per-instance failure reasons: why one prebuild failed.
REASON_IMAGE_PULL_FAILED: Final = "ImagePullFailed"
REASON_CRASH_LOOP: Final = "CrashLoop"
REASON_READINESS_TIMEOUT: Final = "ReadinessTimeout"
REASON_POD_FAILED: Final = "PodFailed"
REASON_POD_DELETED: Final = "PodDeleted"
REASON_UNSCHEDULABLE: Final = "Unschedulable"
REASON_POD_REJECTED: Final = "PodRejected"

FAILURE_REASONS: Final = frozenset(
    {
        REASON_IMAGE_PULL_FAILED,
        REASON_CRASH_LOOP,
        REASON_READINESS_TIMEOUT,
        REASON_POD_FAILED,
        REASON_POD_DELETED,
        REASON_UNSCHEDULABLE,
        REASON_POD_REJECTED,
        REASON_VALIDATION_FAILED,
    }
)

# Workspace lifecycle reasons.
REASON_PREBUILD_CREATED: Final = "PrebuildCreated"
REASON_PREBUILD_READY: Final = "PrebuildReady"
REASON_PREBUILD_DELETED: Final = "PrebuildDeleted"
REASON_EXTRANEOUS: Final = "Extraneous"
REASON_OUTDATED: Final = "Outdated"
REASON_EXPIRED: Final = "Expired"
REASON_FAILED_CLEANUP: Final = "FailedCleanup"

# Claim reasons.
REASON_CLAIMED_PREBUILT: Final = "ClaimedPrebuilt"
REASON_COLD_START: Final = "ColdStart"
REASON_WAITING_FOR_WORKSPACE: Final = "WaitingForWorkspace"
REASON_PRESET_NOT_FOUND: Final = "PresetNotFound"
REASON_CLAIM_FAILED: Final = "ClaimFailed"
REASON_REINIT_REQUESTED: Final = "ReinitRequested"
REASON_REINIT_SUCCEEDED: Final = "ReinitSucceeded"
REASON_REINIT_FAILED: Final = "ReinitFailed"
