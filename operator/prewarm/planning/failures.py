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

from prewarm.api.reasons import FailureReason
from prewarm.api.timestamps import parse_time


class Verdict(enum.StrEnum):
    BUILDING = "Building"
    READY = "Ready"
    FAILED = "Failed"


# Waiting reasons that no amount of waiting will fix.
_FATAL_WAITING = {
    "ErrImagePull": FailureReason.IMAGE_PULL,
    "ImagePullBackOff": FailureReason.IMAGE_PULL,
    "InvalidImageName": FailureReason.INVALID_IMAGE,
    "CreateContainerConfigError": FailureReason.CONTAINER_CONFIG,
    "CreateContainerError": FailureReason.CONTAINER_CONFIG,
}


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


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    reason: FailureReason | None = None
    message: str = ""


BUILDING = Outcome(Verdict.BUILDING)
READY = Outcome(Verdict.READY)


def classify(
    pod: PodView, now: datetime, readiness_timeout: timedelta, crashloop_restarts: int
) -> Outcome:
    if pod.phase == "Failed":
        detail = next(
            (
                f"container {c.name} exited with code {c.exit_code}"
                + (f" ({c.terminated_reason})" if c.terminated_reason else "")
                + (f": {c.terminated_message}" if c.terminated_message else "")
                for c in pod.containers
                if c.exit_code not in (None, 0)
            ),
            pod.status_message or pod.status_reason or "pod failed",
        )
        return Outcome(Verdict.FAILED, FailureReason.POD_FAILED, detail)
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
    if now - pod.created_at >= readiness_timeout:
        if pod.unschedulable_message:
            return Outcome(
                Verdict.FAILED,
                FailureReason.UNSCHEDULABLE,
                f"not scheduled after {readiness_timeout}: {pod.unschedulable_message}",
            )
        return Outcome(
            Verdict.FAILED,
            FailureReason.READINESS_TIMEOUT,
            f"not Ready after {readiness_timeout} (pod phase {pod.phase})",
        )
    return BUILDING


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
    containers = []
    for c in status.get("containerStatuses") or []:
        state = c.get("state") or {}
        waiting = state.get("waiting") or {}
        terminated = state.get("terminated") or {}
        containers.append(
            ContainerState(
                name=str(c.get("name", "")),
                ready=bool(c.get("ready")),
                restart_count=int(c.get("restartCount") or 0),
                waiting_reason=waiting.get("reason"),
                waiting_message=waiting.get("message"),
                terminated_reason=terminated.get("reason"),
                terminated_message=terminated.get("message"),
                exit_code=terminated.get("exitCode"),
            )
        )
    return PodView(
        phase=str(status.get("phase") or "Pending"),
        created_at=parse_time(meta.get("creationTimestamp")) or datetime.now(UTC),
        ready=(conditions.get("Ready") or {}).get("status") == "True",
        unschedulable_message=unschedulable,
        status_reason=status.get("reason"),
        status_message=status.get("message"),
        containers=tuple(containers),
    )
