from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prewarm.api.reasons import FailureReason
from prewarm.planning.failures import ContainerState, PodView, Verdict, classify

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(minutes=5)


def pod(age_s: int = 10, **kw: object) -> PodView:
    return PodView(created_at=NOW - timedelta(seconds=age_s), **kw)  # type: ignore[arg-type]


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
        (
            pod(age_s=301, phase="Pending", unschedulable_message="0/3 nodes are available"),
            Verdict.FAILED,
            FailureReason.UNSCHEDULABLE,
        ),
        (pod(age_s=299, phase="Pending"), Verdict.BUILDING, None),
        (pod(age_s=300, phase="Pending"), Verdict.FAILED, FailureReason.READINESS_TIMEOUT),
        # Ready past the timeout is still Ready: the timeout is about getting there.
        (pod(age_s=3000, phase="Running", ready=True), Verdict.READY, None),
    ],
)
def test_classify(view: PodView, verdict: Verdict, reason: FailureReason | None) -> None:
    outcome = classify(view, NOW, TIMEOUT, crashloop_restarts=3)
    assert outcome.verdict is verdict
    assert outcome.reason is reason
    if verdict is Verdict.FAILED:
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
