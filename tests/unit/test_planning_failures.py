from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prewarm.api.reasons import DisruptionReason, FailureReason
from prewarm.planning.failures import (
    START_ALLOWANCE,
    ContainerState,
    PodView,
    Verdict,
    classify,
    pod_view,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(minutes=5)


def pod(age_s: int = 10, **kw: object) -> PodView:
    return PodView(created_at=NOW - timedelta(seconds=age_s), **kw)  # type: ignore[arg-type]


def scheduled(age_s: int, **kw: object) -> PodView:
    """Scheduled at creation, containers not started (pulling, mounting)."""
    created = NOW - timedelta(seconds=age_s)
    return pod(age_s=age_s, phase="Pending", scheduled_at=created, **kw)


def running(age_s: int, started_s: int, **kw: object) -> PodView:
    """Running, not Ready, its container started `started_s` ago."""
    started = NOW - timedelta(seconds=started_s)
    container = ContainerState("ws", started_at=started)
    return pod(age_s=age_s, phase="Running", scheduled_at=NOW - timedelta(seconds=age_s),
               containers=(container,), **kw)  # fmt: skip


@pytest.mark.parametrize(
    ("view", "verdict", "reason"),
    [
        (pod(phase="Pending"), Verdict.BUILDING, None),
        (pod(phase="Running", ready=False), Verdict.BUILDING, None),
        (pod(phase="Running", ready=True), Verdict.READY, None),
        (
            pod(phase="Failed", containers=[ContainerState("ws", exit_code=1)]),
            Verdict.FAILED,
            FailureReason.POD_FAILED,
        ),
        (pod(phase="Succeeded"), Verdict.FAILED, FailureReason.POD_SUCCEEDED),
        (
            pod(phase="Pending", containers=[ContainerState("ws", waiting_reason="ErrImagePull")]),
            Verdict.FAILED,
            FailureReason.IMAGE_PULL,
        ),
        (
            pod(
                phase="Pending",
                containers=[ContainerState("ws", waiting_reason="ImagePullBackOff")],
            ),
            Verdict.FAILED,
            FailureReason.IMAGE_PULL,
        ),
        (
            pod(
                phase="Pending",
                containers=[ContainerState("ws", waiting_reason="InvalidImageName")],
            ),
            Verdict.FAILED,
            FailureReason.INVALID_IMAGE,
        ),
        (
            pod(
                phase="Pending",
                containers=[ContainerState("ws", waiting_reason="CreateContainerConfigError")],
            ),
            Verdict.FAILED,
            FailureReason.CONTAINER_CONFIG,
        ),
        (
            pod(
                phase="Running",
                containers=[
                    ContainerState("ws", restart_count=2, waiting_reason="CrashLoopBackOff")
                ],
            ),
            Verdict.BUILDING,
            None,
        ),
        (
            pod(
                phase="Running",
                containers=[
                    ContainerState("ws", restart_count=3, waiting_reason="CrashLoopBackOff")
                ],
            ),
            Verdict.FAILED,
            FailureReason.CRASH_LOOP,
        ),
        # No node had room for the whole readiness timeout: a disruption, not a failure.
        (
            pod(age_s=301, phase="Pending", unschedulable_message="0/3 nodes are available"),
            Verdict.DISRUPTED,
            DisruptionReason.UNSCHEDULABLE,
        ),
        (pod(age_s=299, phase="Pending"), Verdict.BUILDING, None),
        (pod(age_s=300, phase="Pending"), Verdict.DISRUPTED, DisruptionReason.UNSCHEDULABLE),
        # The readiness timeout runs from the containers' start...
        (running(age_s=3000, started_s=299), Verdict.BUILDING, None),
        (running(age_s=3000, started_s=300), Verdict.FAILED, FailureReason.READINESS_TIMEOUT),
        # ...and a slow pull of a good image gets START_ALLOWANCE timeouts after scheduling.
        (scheduled(age_s=299 * START_ALLOWANCE), Verdict.BUILDING, None),
        (
            scheduled(age_s=300 * START_ALLOWANCE),
            Verdict.FAILED,
            FailureReason.CONTAINERS_NOT_STARTED,
        ),
        # Lost to the infrastructure.
        (
            pod(phase="Failed", status_reason="Evicted", status_message="low on memory"),
            Verdict.DISRUPTED,
            DisruptionReason.EVICTED,
        ),
        (
            running(age_s=60, started_s=50, disruption_target=("PreemptionByScheduler", "")),
            Verdict.DISRUPTED,
            DisruptionReason.PREEMPTED,
        ),
        (
            running(age_s=60, started_s=50, disruption_target=("EvictionByEvictionAPI", "drain")),
            Verdict.DISRUPTED,
            DisruptionReason.EVICTED,
        ),
        (
            running(age_s=60, started_s=50, disruption_target=("DeletionByTaintManager", "")),
            Verdict.DISRUPTED,
            DisruptionReason.NODE_LOST,
        ),
        (pod(phase="Unknown"), Verdict.DISRUPTED, DisruptionReason.NODE_LOST),
        (
            pod(phase="Failed", status_reason="NodeShutdown"),
            Verdict.DISRUPTED,
            DisruptionReason.NODE_LOST,
        ),
        # Ready past the timeout is still Ready: the timeout is about getting there.
        (pod(age_s=3000, phase="Running", ready=True), Verdict.READY, None),
    ],
)
def test_classify(
    view: PodView, verdict: Verdict, reason: FailureReason | DisruptionReason | None
) -> None:
    outcome = classify(view, NOW, TIMEOUT, crashloop_restarts=3)
    assert outcome.verdict is verdict
    assert outcome.reason is reason
    if verdict in (Verdict.FAILED, Verdict.DISRUPTED):
        assert outcome.message


def test_failed_message_names_container_and_exit_code() -> None:
    view = pod(
        phase="Failed",
        containers=[ContainerState("ide", exit_code=137, terminated_reason="OOMKilled")],
    )
    message = classify(view, NOW, TIMEOUT, 3).message
    assert "ide" in message
    assert "137" in message
    assert "OOMKilled" in message


def test_a_workspace_ready_before_that_loses_readiness_is_disrupted_after_the_timeout() -> None:
    flapped = running(age_s=3000, started_s=2990, ready_changed_at=NOW - timedelta(seconds=30))
    waiting = classify(flapped, NOW, TIMEOUT, 3, was_ready=True)
    assert (waiting.verdict, waiting.waiting) == (
        Verdict.BUILDING,
        ("NotReady", "Ready before, not Ready now"),
    )
    assert waiting.due == NOW + timedelta(seconds=270)
    lost = running(age_s=3000, started_s=2990, ready_changed_at=NOW - timedelta(seconds=300))
    gone = classify(lost, NOW, TIMEOUT, 3, was_ready=True)
    assert (gone.verdict, gone.reason) == (Verdict.DISRUPTED, DisruptionReason.LOST_READINESS)
    # The same pod for a workspace never Ready: its containers' start counts, so a failure.
    assert classify(lost, NOW, TIMEOUT, 3).verdict is Verdict.FAILED


def test_a_waiting_workspace_says_what_it_waits_for_and_until_when() -> None:
    unschedulable = pod(age_s=10, phase="Pending", unschedulable_message="0/1 nodes: cpu")
    outcome = classify(unschedulable, NOW, TIMEOUT, 3)
    assert outcome.waiting == ("Unschedulable", "0/1 nodes: cpu")
    assert outcome.due == NOW + timedelta(seconds=290)
    pulling = scheduled(
        age_s=10, containers=(ContainerState("ws", waiting_reason="ContainerCreating"),)
    )
    assert classify(pulling, NOW, TIMEOUT, 3).waiting == (
        "ContainerCreating",
        "container ws: ContainerCreating",
    )


def test_pod_view_reads_the_clocks_and_the_disruption_target() -> None:
    view = pod_view(
        {
            "metadata": {"creationTimestamp": "2026-11-27T11:50:00Z"},
            "spec": {"nodeName": "n1"},
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "PodScheduled", "status": "True",
                     "lastTransitionTime": "2026-11-27T11:51:00Z"},
                    {"type": "Ready", "status": "False",
                     "lastTransitionTime": "2026-11-27T11:58:00Z"},
                    {"type": "DisruptionTarget", "status": "True",
                     "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"},
                ],
                "containerStatuses": [
                    {"name": "a", "state": {"running": {"startedAt": "2026-11-27T11:55:00Z"}},
                     "lastState": {"terminated": {"startedAt": "2026-11-27T11:53:00Z"}}},
                    {"name": "b", "state": {"waiting": {"reason": "ContainerCreating"}}},
                ],
            },
        }
    )  # fmt: skip
    assert view.scheduled_at == datetime(2026, 11, 27, 11, 51, tzinfo=UTC)
    assert view.started_at == datetime(2026, 11, 27, 11, 53, tzinfo=UTC)
    assert view.ready_changed_at == datetime(2026, 11, 27, 11, 58, tzinfo=UTC)
    assert view.disruption_target == ("EvictionByEvictionAPI", "Eviction API: evicting")
    unscheduled = pod_view({"metadata": {"creationTimestamp": "2026-11-27T11:50:00Z"}})
    assert unscheduled.scheduled_at is None
