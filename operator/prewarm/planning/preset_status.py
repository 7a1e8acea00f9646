"""A preset's status and the Events of its transitions: pure.

The new status is computed whole and compared with the old one, so a
converged pool costs no write; conditions keep lastTransitionTime unless
their status flips. Events come from transitions of `prebuildStatus` only,
never from a loop that merely sees the same state again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prewarm.api import reasons
from prewarm.api.conditions import Condition, ConditionStatus, get_condition, set_condition
from prewarm.api.preset import (
    AutoscaleStatus,
    LastFailure,
    PrebuildStatus,
    PresetStatus,
    pool_selector,
)
from prewarm.planning.pool import Blocker, PoolPlan
from prewarm.planning.schedule import ScheduleProblem


@dataclass(frozen=True)
class FailureSummary:
    hard_limited: bool
    hard_limit: int
    consecutive_failures: int
    validation_failed: bool
    validation_message: str | None
    backoff_until: datetime | None
    last_failure: LastFailure | None


@dataclass(frozen=True)
class EventIntent:
    type: str  # Normal | Warning
    reason: str
    message: str
    once_key: str | None = None  # post at most once per object and key (k8s.events)


@dataclass(frozen=True)
class StatusInput:
    name: str
    generation: int
    template_hash: str
    plan: PoolPlan
    failure: FailureSummary
    paused: bool
    paused_by: str | None  # "annotation" | "operator" | None
    desired_note: str | None  # a schedule problem or a clamp, shown on Ready
    now: datetime
    ledger_available: bool = True
    # Which ResourceQuota refuses the pool's pods (the API server's words), if one does.
    quota_message: str | None = None
    schedule_problem: ScheduleProblem | None = None
    # What the starting workspaces wait for, by reason (Unschedulable: 2, ...).
    waiting: Mapping[str, int] = field(default_factory=dict)
    # Why the API server refuses to create PrebuiltWorkspaces, if it does.
    create_refusal: str | None = None
    # What demand mode saw and chose (None: spec.prebuilds.autoscale is off).
    autoscale: AutoscaleStatus | None = None


def _summary(state: PrebuildStatus, inp: StatusInput) -> str:
    """One word for the STATUS column: prebuildStatus unless it is Normal,
    else the first thing a person should look at."""
    if state is not PrebuildStatus.NORMAL:
        return state.value
    if not inp.ledger_available:
        return reasons.DEGRADED
    if inp.quota_message is not None:
        return reasons.QUOTA_EXCEEDED
    if inp.create_refusal is not None:
        return reasons.CREATE_REFUSED
    if inp.schedule_problem is not None:
        return reasons.SCHEDULE_INVALID
    if inp.paused:
        return reasons.PAUSED
    return state.value


def _prebuild_status(failure: FailureSummary) -> PrebuildStatus:
    if failure.validation_failed:
        return PrebuildStatus.VALIDATION_FAILED
    if failure.hard_limited:
        return PrebuildStatus.HARD_LIMITED
    return PrebuildStatus.NORMAL


def _flag(value: bool) -> ConditionStatus:
    return ConditionStatus.TRUE if value else ConditionStatus.FALSE


# A condition as computed for one pass: type, whether it holds, reason, message.
_Wanted = tuple[str, bool, str, str]


def _pool_conditions(inp: StatusInput) -> list[_Wanted]:
    c = inp.plan.counts
    ready = c.desired == 0 or c.ready >= c.desired
    note = f" ({inp.desired_note})" if inp.desired_note else ""
    served = f", {c.outdated} of them outdated (being replaced)" if c.outdated else ""
    waits = ", ".join(f"{n} {reason}" for reason, n in sorted(inp.waiting.items()))
    waiting = f"; waiting: {waits}" if waits else ""
    return [
        (
            reasons.READY,
            ready,
            reasons.REASON_POOL_READY if ready else _not_ready_reason(inp),
            f"{c.ready}/{c.desired} warm instances ready{served}{waiting}{note}",
        ),
        _progressing(inp),
    ]


# What stops creates for good until a person acts (or backoff ends): a rollout
# waits for it, and the outdated warm workspaces keep serving meanwhile.
_ROLLOUT_BLOCKERS = frozenset(
    {Blocker.HARD_LIMITED, Blocker.VALIDATION_FAILED, Blocker.BACKOFF, Blocker.PAUSED}
)


def _progressing(inp: StatusInput) -> _Wanted:
    c = inp.plan.counts
    blocked = inp.plan.blocked_by
    if c.outdated and blocked in _ROLLOUT_BLOCKERS and not inp.plan.deletions:
        return (
            reasons.PROGRESSING,
            False,
            reasons.REASON_ROLLOUT_BLOCKED,
            f"rollout blocked ({blocked}): {c.outdated} outdated warm workspace(s) keep "
            "serving claims until their replacements are Ready",
        )
    progressing = bool(inp.plan.create or inp.plan.deletions or c.starting or c.outdated)
    if not progressing:
        return (reasons.PROGRESSING, False, blocked or reasons.REASON_STABLE, "nothing to do")
    replacing = f", replacing {c.outdated} outdated" if c.outdated else ""
    return (
        reasons.PROGRESSING,
        True,
        _progress_reason(inp),
        f"creating {inp.plan.create}, deleting {len(inp.plan.deletions)}, "
        f"starting {c.starting}{replacing}",
    )


def _failure_conditions(f: FailureSummary) -> list[_Wanted]:
    last = f.last_failure
    limited = (
        f"the last {f.hard_limit} prebuilds failed"
        + (f"; last: {last.reason}: {last.message}" if last else "")
        + "; no new prebuilds until the spec changes or prewarm.dev/retry is set"
    )
    return [
        (
            reasons.HARD_LIMITED,
            f.hard_limited,
            reasons.REASON_PREBUILD_FAILURE_LIMIT_REACHED
            if f.hard_limited
            else reasons.REASON_BELOW_LIMIT,
            limited
            if f.hard_limited
            else f"{f.consecutive_failures} consecutive failure(s), limit {f.hard_limit or 'off'}",
        ),
        (
            reasons.VALIDATION_FAILED,
            f.validation_failed,
            reasons.REASON_VALIDATION_FAILED
            if f.validation_failed
            else reasons.REASON_TEMPLATE_VALID,
            (f.validation_message or "the API server rejected the pod template")
            if f.validation_failed
            else "the API server accepts the pod template",
        ),
    ]


def _operating_conditions(inp: StatusInput) -> list[_Wanted]:
    pause_reason = (
        reasons.REASON_PAUSED_BY_ANNOTATION
        if inp.paused_by == "annotation"
        else reasons.REASON_PAUSED_BY_OPERATOR
    )
    down = not inp.ledger_available
    quota = inp.quota_message
    schedule = inp.schedule_problem
    return [
        (
            reasons.PAUSED,
            inp.paused,
            pause_reason if inp.paused else reasons.REASON_RESUMED,
            "prebuilds are neither created nor deleted" if inp.paused else "not paused",
        ),
        (
            reasons.DEGRADED,
            down,
            reasons.REASON_LEDGER_UNAVAILABLE if down else reasons.REASON_LEDGER_AVAILABLE,
            "the PostgreSQL ledger cannot be reached: no new prebuilds until it is back "
            "(deletions and claims go on)"
            if down
            else "the PostgreSQL ledger is reachable",
        ),
        (
            reasons.QUOTA_EXCEEDED,
            quota is not None,
            reasons.REASON_QUOTA_EXCEEDED if quota else reasons.REASON_WITHIN_QUOTA,
            "a ResourceQuota refuses new pods, retried with backoff (claims are still "
            f"served from Ready workspaces): {quota}"
            if quota
            else "no ResourceQuota refused the last pod",
        ),
        (
            reasons.CREATE_REFUSED,
            inp.create_refusal is not None,
            reasons.REASON_WORKSPACE_CREATE_REFUSED
            if inp.create_refusal
            else reasons.REASON_CREATES_ACCEPTED,
            "the API server refuses to create PrebuiltWorkspaces, retried with backoff "
            f"(claims are still served from Ready workspaces): {inp.create_refusal}"
            if inp.create_refusal
            else "the API server accepts new PrebuiltWorkspaces",
        ),
        (
            reasons.SCHEDULE_INVALID,
            schedule is not None,
            schedule.reason if schedule else reasons.REASON_SCHEDULE_VALID,
            f"{schedule.message}; the default count (spec.prebuilds.instances) applies where "
            "no valid schedule matches"
            if schedule
            else "every schedule and the timezone are valid",
        ),
    ]


def compute_status(previous: PresetStatus, inp: StatusInput) -> PresetStatus:
    c = inp.plan.counts
    f = inp.failure
    state = _prebuild_status(f)
    conditions: list[Condition] = list(previous.conditions)
    wanted = _pool_conditions(inp) + _failure_conditions(f) + _operating_conditions(inp)
    for kind, holds, reason, message in wanted:
        conditions = set_condition(
            conditions, kind, _flag(holds), reason, message, inp.generation, inp.now
        )
    backoff = f.backoff_until if f.backoff_until and f.backoff_until > inp.now else None
    return PresetStatus(
        observed_generation=inp.generation,
        template_hash=inp.template_hash,
        desired=c.desired,
        running=c.running,
        ready=c.ready,
        starting=c.starting,
        claimed=c.claimed,
        failed=c.failed,
        outdated=c.outdated,
        previous_template_hash=_rolling_from(previous, inp),
        prebuild_status=state,
        summary=_summary(state, inp),
        paused=inp.paused,
        backoff_until=backoff,
        last_failure=f.last_failure,
        selector=pool_selector(inp.name),
        autoscale=inp.autoscale,
        conditions=conditions,
    )


def _rolling_from(previous: PresetStatus, inp: StatusInput) -> str | None:
    """The template the pool rolls away from, while outdated warm workspaces remain."""
    if not inp.plan.counts.outdated:
        return None
    if previous.template_hash and previous.template_hash != inp.template_hash:
        return previous.template_hash
    return previous.previous_template_hash


def _not_ready_reason(inp: StatusInput) -> str:
    blocked = inp.plan.blocked_by
    if blocked in (
        Blocker.HARD_LIMITED,
        Blocker.VALIDATION_FAILED,
        Blocker.BACKOFF,
        Blocker.LEDGER_UNAVAILABLE,
        Blocker.QUOTA_EXCEEDED,
        Blocker.CREATE_REFUSED,
    ):
        return str(blocked)
    if inp.paused:
        return reasons.PAUSED
    if inp.waiting:
        # What most of its starting workspaces wait for (Unschedulable, ...).
        return max(sorted(inp.waiting), key=lambda reason: inp.waiting[reason])
    return reasons.REASON_SCALING_UP


def _progress_reason(inp: StatusInput) -> str:
    if inp.plan.counts.outdated or any(d.reason == "Outdated" for d in inp.plan.deletions):
        return reasons.REASON_ROLLING_OUT
    if inp.plan.create or inp.plan.counts.starting:
        return reasons.REASON_SCALING_UP
    return reasons.REASON_SCALING_DOWN


def _episode_key(kind: str, previous: PresetStatus) -> str:
    """Names one hard-limit episode: its template and its last failure."""
    last = previous.last_failure
    when = last.time.isoformat() if last and last.time else "-"
    return f"{kind}/{previous.template_hash or '-'}/{when}"


def transition_events(
    previous: PresetStatus, new: PresetStatus, failure: FailureSummary
) -> list[EventIntent]:
    """Events for prebuildStatus transitions, except the hard-limit one, and
    for each new schedule problem.

    The hard-limit Event is de-duplicated through the ledger (it must survive
    restarts and replicas), so the glue posts it; this covers the rest.
    """
    events: list[EventIntent] = _schedule_events(previous, new)
    before = previous.prebuild_status or PrebuildStatus.NORMAL
    after = new.prebuild_status or PrebuildStatus.NORMAL
    if before == after:
        return events
    if after is PrebuildStatus.VALIDATION_FAILED:
        events.append(
            EventIntent(
                "Warning",
                reasons.REASON_VALIDATION_FAILED,
                failure.validation_message or "the API server rejected the pod template",
            )
        )
    if before is PrebuildStatus.HARD_LIMITED and after is PrebuildStatus.NORMAL:
        events.append(
            EventIntent(
                "Normal",
                reasons.REASON_HARD_LIMIT_RESET,
                "prebuilds resume: the spec changed or prewarm.dev/retry was set",
                # One per episode: a pass that runs before the watch shows the
                # status the last pass wrote sees this transition again.
                once_key=_episode_key("hard-limit-reset", previous),
            )
        )
    return events


def _schedule_events(previous: PresetStatus, new: PresetStatus) -> list[EventIntent]:
    """A Warning when the ScheduleInvalid condition turns True or names another problem."""
    now = get_condition(new.conditions, reasons.SCHEDULE_INVALID)
    if now is None or now.status is not ConditionStatus.TRUE:
        return []
    before = get_condition(previous.conditions, reasons.SCHEDULE_INVALID)
    if before is not None and (before.status, before.message) == (now.status, now.message):
        return []
    key = "schedule-" + hashlib.sha256(now.message.encode()).hexdigest()[:16]
    return [EventIntent("Warning", reasons.REASON_INVALID_SCHEDULE, now.message, key)]


def status_patch(new: PresetStatus) -> dict[str, Any]:
    """The merge patch that makes the stored status equal `new` (null clears a field)."""
    dumped = new.model_dump(by_alias=True, mode="json")
    return {k: v for k, v in dumped.items()}


# Numbers that move with every pod while a pool fills or rolls out.
_COUNTERS = frozenset({"desired", "running", "ready", "starting", "claimed", "failed", "outdated"})
# The conditions that follow the pool's progress; the others report a problem.
_PROGRESS_CONDITIONS = frozenset({reasons.READY, reasons.PROGRESSING})


def settled(status: PresetStatus) -> bool:
    """Whether the pool has stopped moving: not Progressing, and not merely
    waiting for room under the operator-wide create cap (it goes on as soon as
    another preset's prebuilds finish)."""
    progressing = get_condition(status.conditions, reasons.PROGRESSING)
    if progressing is None:
        return True
    return (
        progressing.status != ConditionStatus.TRUE and progressing.reason != Blocker.CREATE_BUDGET
    )


def can_wait(stored: Mapping[str, Any], new: PresetStatus) -> bool:
    """Whether the change from the stored status to `new` can wait a moment and
    go out together with the next ones: the pool is still moving and only its
    progress changed (counters, and the Ready and Progressing conditions).

    Everything else goes out at once: the first status, the end state, a new
    generation or template, and any other condition or field (HardLimited,
    ValidationFailed, Degraded, Paused, QuotaExceeded, backoff, the last
    failure, demand mode's figures)."""
    if settled(new):
        return False

    def shape(status: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in status.items() if v is not None and k not in _COUNTERS}
        out["conditions"] = [
            (c.get("type"), c.get("observedGeneration"))
            if c.get("type") in _PROGRESS_CONDITIONS
            else (c.get("type"), c.get("status"), c.get("reason"), c.get("observedGeneration"))
            for c in status.get("conditions") or []
        ]
        return out

    return shape(stored) == shape(status_patch(new))


def status_equal(stored: Mapping[str, Any], new: PresetStatus) -> bool:
    """Whether writing `new` would change nothing (compared in wire form)."""
    wire = {k: v for k, v in status_patch(new).items() if v is not None}
    existing = {k: v for k, v in stored.items() if v is not None}
    return wire == existing


def invalid_spec_status(
    stored: Mapping[str, Any],
    previous: PresetStatus,
    message: str,
    generation: int,
    now: datetime,
) -> PresetStatus | None:
    """The status of a preset whose spec does not parse (the CRD schema should
    have stopped it): ValidationFailed with the parser's message; None if the
    stored status says so already."""
    status = PresetStatus.model_validate(
        {**stored, "prebuildStatus": PrebuildStatus.VALIDATION_FAILED}
    )
    status.conditions = set_condition(
        previous.conditions,
        reasons.VALIDATION_FAILED,
        "True",
        reasons.REASON_VALIDATION_FAILED,
        f"spec is invalid: {message}"[:2000],
        generation,
        now,
    )
    return None if status_equal(stored, status) else status


def status_as_known(
    watched_version: str,
    watched: Mapping[str, Any],
    written: tuple[str, Mapping[str, Any]] | None,
) -> Mapping[str, Any]:
    """The preset's status as this process knows it: what it last wrote while
    the watch still shows the version that write went over (the watch lags
    behind: a pass would see an old status, write it again and post its
    transition Events twice); else the watched one."""
    if written is not None and watched_version and written[0] == watched_version:
        return written[1]
    return watched
