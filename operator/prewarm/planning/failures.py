"""Failure classification of one prebuild from its pod: pure, table-tested.

Mirrors what devworkspace-operator and actions-runner-controller learned:
look at container states, not only the pod phase, and give every verdict a
reason people can act on.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prewarm.api.reasons import DisruptionReason, FailureReason
from prewarm.api.timestamps import parse_time


class Verdict(enum.StrEnum):
    BUILDING = "Building"
    READY = "Ready"
    FAILED = "Failed"  # the workspace's own fault: counts toward backoff and the hard limit
    DISRUPTED = "Disrupted"  # lost to its infrastructure: replaced, never counted


# Waiting reasons that no amount of waiting will fix.
_FATAL_WAITING = {
    "ErrImagePull": FailureReason.IMAGE_PULL,
    "ImagePullBackOff": FailureReason.IMAGE_PULL,
    "InvalidImageName": FailureReason.INVALID_IMAGE,
    "CreateContainerConfigError": FailureReason.CONTAINER_CONFIG,
    "CreateContainerError": FailureReason.CONTAINER_CONFIG,
}

# The pod's status.reason when the kubelet or the node controller ended it.
_DISRUPTED_POD_REASONS = {
    "Evicted": DisruptionReason.EVICTED,
    "Preempting": DisruptionReason.PREEMPTED,
    "NodeLost": DisruptionReason.NODE_LOST,
    "NodeShutdown": DisruptionReason.NODE_LOST,
    "Shutdown": DisruptionReason.NODE_LOST,
    "Terminated": DisruptionReason.NODE_LOST,
    "UnexpectedAdmissionError": DisruptionReason.NODE_LOST,
}
# The DisruptionTarget condition's reasons (Kubernetes 1.26+, GA in 1.31).
_DISRUPTION_TARGET_REASONS = {
    "PreemptionByScheduler": DisruptionReason.PREEMPTED,
    "EvictionByEvictionAPI": DisruptionReason.EVICTED,
    "TerminationByKubelet": DisruptionReason.EVICTED,
    "DeletionByTaintManager": DisruptionReason.NODE_LOST,
    "DeletionByPodGC": DisruptionReason.NODE_LOST,
}

# A scheduled pod whose containers have not started (pulling images, mounting
# volumes) gets this many readiness timeouts before it counts as failed: a
# slow pull of a good image is no failure, a mount that never works is.
START_ALLOWANCE = 3


@dataclass(frozen=True)
class ContainerState:
    name: str
    ready: bool = False
    restart_count: int = 0
    waiting_reason: str | None = None
    waiting_message: str | None = None
    terminated_reason: str | None = None
    terminated_message: str | None = None
    exit_code: int | None = None
    started_at: datetime | None = None  # the earliest start of this container we can see


@dataclass(frozen=True)
class PodView:
    """What the classifier needs of a pod (built from the API object by the glue)."""

    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    created_at: datetime
    ready: bool = False
    unschedulable_message: str | None = None
    status_reason: str | None = None
    status_message: str | None = None
    containers: Sequence[ContainerState] = field(default_factory=tuple)
    scheduled_at: datetime | None = None  # PodScheduled turned True
    ready_changed_at: datetime | None = None  # the Ready condition's last transition
    # The DisruptionTarget condition, if True: (reason, message).
    disruption_target: tuple[str, str] | None = None

    @property
    def started_at(self) -> datetime | None:
        """When its containers could first run (scheduled, images pulled): the
        earliest container start."""
        starts = [c.started_at for c in self.containers if c.started_at is not None]
        return min(starts) if starts else None


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    reason: FailureReason | DisruptionReason | None = None
    message: str = ""
    # BUILDING: what it waits for, as the kubelet or the scheduler says it
    # (shown on the workspace and the preset), and when time alone ends the wait.
    waiting: tuple[str, str] | None = None  # (reason, message)
    due: datetime | None = None


BUILDING = Outcome(Verdict.BUILDING)
READY = Outcome(Verdict.READY)


def classify(
    pod: PodView,
    now: datetime,
    readiness_timeout: timedelta,
    crashloop_restarts: int,
    was_ready: bool = False,
) -> Outcome:
    """The workspace's fate as its pod shows it. `was_ready`: the workspace was
    Ready before (a later loss of readiness is a disruption, not a failure)."""
    disrupted = _disruption(pod)
    if disrupted is not None:
        return disrupted
    if pod.phase == "Failed":
        return Outcome(Verdict.FAILED, FailureReason.POD_FAILED, _exit_detail(pod))
    if pod.phase == "Succeeded":
        return Outcome(
            Verdict.FAILED,
            FailureReason.POD_SUCCEEDED,
            "all containers exited; a workspace must keep running",
        )
    for c in pod.containers:
        if c.waiting_reason in _FATAL_WAITING:
            return Outcome(
                Verdict.FAILED,
                _FATAL_WAITING[c.waiting_reason],
                f"container {c.name}: {c.waiting_reason}: {c.waiting_message or ''}".rstrip(": "),
            )
        if c.restart_count >= crashloop_restarts and not c.ready:
            return Outcome(
                Verdict.FAILED,
                FailureReason.CRASH_LOOP,
                f"container {c.name} restarted {c.restart_count} times"
                + (f" ({c.waiting_reason})" if c.waiting_reason else ""),
            )
    if pod.phase == "Running" and pod.ready:
        return READY
    if was_ready:
        return _lost_readiness(pod, now, readiness_timeout)
    return _not_ready_yet(pod, now, readiness_timeout)


def _disruption(pod: PodView) -> Outcome | None:
    if pod.disruption_target is not None:
        reason, message = pod.disruption_target
        kind = _DISRUPTION_TARGET_REASONS.get(reason, DisruptionReason.EVICTED)
        return Outcome(Verdict.DISRUPTED, kind, f"{reason}: {message}".rstrip(": "))
    if pod.phase in ("Failed", "Unknown") and pod.status_reason in _DISRUPTED_POD_REASONS:
        kind = _DISRUPTED_POD_REASONS[pod.status_reason]
        detail = pod.status_message or pod.status_reason
        return Outcome(Verdict.DISRUPTED, kind, f"{pod.status_reason}: {detail}")
    if pod.phase == "Unknown":
        return Outcome(
            Verdict.DISRUPTED, DisruptionReason.NODE_LOST, "pod phase Unknown: its node is lost"
        )
    return None


def _exit_detail(pod: PodView) -> str:
    return next(
        (
            f"container {c.name} exited with code {c.exit_code}"
            + (f" ({c.terminated_reason})" if c.terminated_reason else "")
            + (f": {c.terminated_message}" if c.terminated_message else "")
            for c in pod.containers
            if c.exit_code not in (None, 0)
        ),
        pod.status_message or pod.status_reason or "pod failed",
    )


def _lost_readiness(pod: PodView, now: datetime, readiness_timeout: timedelta) -> Outcome:
    since = pod.ready_changed_at or now
    due = since + readiness_timeout
    if now >= due:
        return Outcome(
            Verdict.DISRUPTED,
            DisruptionReason.LOST_READINESS,
            f"Ready before, then not Ready for {readiness_timeout} (pod phase {pod.phase})",
        )
    waiting = ("NotReady", "Ready before, not Ready now")
    return Outcome(Verdict.BUILDING, waiting=waiting, due=due)


def _not_ready_yet(pod: PodView, now: datetime, readiness_timeout: timedelta) -> Outcome:
    """The readiness timeout runs from when the containers started; before that
    the scheduler and the kubelet get their own allowances."""
    waiting = _waiting(pod)
    if pod.unschedulable_message is not None or pod.scheduled_at is None:
        due = pod.created_at + readiness_timeout
        if now < due:
            return Outcome(Verdict.BUILDING, waiting=waiting, due=due)
        return Outcome(
            Verdict.DISRUPTED,
            DisruptionReason.UNSCHEDULABLE,
            f"not scheduled after {readiness_timeout}: "
            f"{pod.unschedulable_message or 'no node was assigned'}",
        )
    started = pod.started_at
    if started is None:
        due = pod.scheduled_at + START_ALLOWANCE * readiness_timeout
        if now < due:
            return Outcome(Verdict.BUILDING, waiting=waiting, due=due)
        return Outcome(
            Verdict.FAILED,
            FailureReason.CONTAINERS_NOT_STARTED,
            f"containers not started {START_ALLOWANCE * readiness_timeout} after scheduling"
            + (f" ({': '.join(waiting)})" if waiting else ""),
        )
    due = started + readiness_timeout
    if now < due:
        return Outcome(Verdict.BUILDING, waiting=waiting, due=due)
    return Outcome(
        Verdict.FAILED,
        FailureReason.READINESS_TIMEOUT,
        f"not Ready {readiness_timeout} after its containers started (pod phase {pod.phase})",
    )


def _waiting(pod: PodView) -> tuple[str, str] | None:
    """What the pod waits for, in the words of whoever said it."""
    if pod.unschedulable_message:
        return "Unschedulable", pod.unschedulable_message
    for c in pod.containers:
        if c.waiting_reason:
            return c.waiting_reason, f"container {c.name}: {c.waiting_message or c.waiting_reason}"
    if pod.scheduled_at is None:
        return "Unscheduled", "the scheduler has not placed the pod yet"
    if pod.started_at is not None and not pod.ready:
        return "NotReady", "containers started, readiness probes not passing yet"
    return None


def pod_view(pod: Mapping[str, Any]) -> PodView:
    """The classifier's view of a core/v1 Pod as the API returns it."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    scheduled = conditions.get("PodScheduled") or {}
    unschedulable = (
        scheduled.get("message") or "unschedulable"
        if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable"
        else None
    )
    created_at = parse_time(meta.get("creationTimestamp")) or datetime.now(UTC)
    scheduled_at: datetime | None = parse_time(scheduled.get("lastTransitionTime")) or created_at
    if scheduled.get("status") != "True" and not (pod.get("spec") or {}).get("nodeName"):
        scheduled_at = None
    target = conditions.get("DisruptionTarget") or {}
    ready = conditions.get("Ready") or {}
    return PodView(
        phase=str(status.get("phase") or "Pending"),
        created_at=created_at,
        ready=ready.get("status") == "True",
        unschedulable_message=unschedulable,
        status_reason=status.get("reason"),
        status_message=status.get("message"),
        containers=tuple(_container(c) for c in status.get("containerStatuses") or []),
        scheduled_at=scheduled_at,
        ready_changed_at=parse_time(ready.get("lastTransitionTime")),
        disruption_target=(str(target.get("reason") or ""), str(target.get("message") or ""))
        if target.get("status") == "True"
        else None,
    )


def _container(c: Mapping[str, Any]) -> ContainerState:
    state = c.get("state") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    last = (c.get("lastState") or {}).get("terminated") or {}
    starts = [
        parse_time(s.get("startedAt"))
        for s in (state.get("running") or {}, terminated, last)
        if s.get("startedAt")
    ]
    return ContainerState(
        name=str(c.get("name", "")),
        ready=bool(c.get("ready")),
        restart_count=int(c.get("restartCount") or 0),
        waiting_reason=waiting.get("reason"),
        waiting_message=waiting.get("message"),
        terminated_reason=terminated.get("reason"),
        terminated_message=terminated.get("message"),
        exit_code=terminated.get("exitCode"),
        started_at=min((t for t in starts if t is not None), default=None),
    )
