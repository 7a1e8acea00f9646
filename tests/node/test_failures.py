"""Real failures on the real node, each classified with its reason and counted
toward the hard limit (3, the chart's default) exactly as on kwok: three
attempts, then HardLimited and exactly one PrebuildFailureLimitReached Event.

- a tag the local registry does not have: the kubelet's pull fails (ErrImagePull);
- a container that exits non-zero: a crash loop (one restart, see conftest);
- a readiness probe that never passes: the readiness timeout;
- a container over its memory limit: OOM-killed by the kernel (restartPolicy
  Never, so the pod fails with the container's OOMKilled state).

And one that is no failure: a workspace whose readiness probe fails after it
was Ready is disrupted and replaced, as often as it happens, and never moves
its preset toward the hard limit.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.node.conftest import NodeOperator
from tests.node.support import events, items, preset, preset_status, wait_until, workspace_container

FAST = {"backoffBase": "1s", "backoffMax": "2s", "readinessTimeout": "20s"}


def _cases(op: NodeOperator) -> dict[str, tuple[dict[str, Any], str, str]]:
    """name -> (container, expected lastFailure reason, text expected in its message)."""
    busybox = op.env.busybox_image
    missing_tag = op.env.node.registry_image.rsplit(":", 1)[0] + ":no-such-tag"
    return {
        "pull": (
            {**workspace_container(missing_tag), "imagePullPolicy": "Always"},
            "ImagePullFailed",
            "ErrImagePull",
        ),
        "crash": (
            workspace_container(busybox, command=["/bin/sh", "-c", "exit 3"]),
            "CrashLoop",
            "restarted",
        ),
        "unready": (
            workspace_container(busybox, readiness=["/bin/false"]),
            "ReadinessTimeout",
            "after its containers started",
        ),
        "oom": (
            workspace_container(
                busybox, command=["/bin/sh", "-c", "tail /dev/zero"], memory="16Mi"
            ),
            "PodFailed",
            "OOMKilled",
        ),
    }


def test_a_pull_from_the_local_registry_is_real(node_operator: NodeOperator) -> None:
    """The counterpart of the missing tag: the same registry serves the tag it has."""
    op = node_operator
    container = {**workspace_container(op.env.node.registry_image), "imagePullPolicy": "Always"}
    op.env.apply(op.namespace, preset("pulled", 1, container))
    wait_until(
        lambda: preset_status(op.env, op.namespace, "pulled").get("ready") == 1,
        timeout=300,
        what="a workspace from the registry Ready",
    )
    pulled = [
        e
        for e in items(op.env, op.namespace, "events")
        if e["reason"] == "Pulled" and op.env.node.registry_image in e.get("message", "")
    ]
    assert pulled, "the kubelet pulled the image from the registry"
    op.env.kubectl("delete", "preset", "pulled", "-n", op.namespace)


def test_real_failures_are_classified_and_stop_at_the_hard_limit(
    node_operator: NodeOperator,
) -> None:
    op = node_operator
    cases = _cases(op)
    for name, (container, _reason, _text) in cases.items():
        manifest = preset(name, 1, container, failure_policy=FAST)
        if name == "oom":
            manifest["spec"]["template"]["spec"]["restartPolicy"] = "Never"
        op.env.apply(op.namespace, manifest)

    def limited() -> list[str]:
        states = {n: preset_status(op.env, op.namespace, n).get("prebuildStatus") for n in cases}
        return sorted(n for n, state in states.items() if state == "HardLimited")

    try:
        wait_until(lambda: len(limited()) == len(cases), timeout=600, what="every preset limited")
    except AssertionError:
        statuses = {n: preset_status(op.env, op.namespace, n) for n in cases}
        pytest.fail(f"not all HardLimited: {limited()}; statuses: {statuses}")
    for name, (_container, reason, text) in cases.items():
        status = preset_status(op.env, op.namespace, name)
        failure = status["lastFailure"]
        assert failure["reason"] == reason, (name, failure)
        assert text in failure.get("message", ""), (name, failure)
        condition = {c["type"]: c for c in status["conditions"]}["HardLimited"]
        assert condition["status"] == "True"
        assert reason in condition["message"], (name, condition)
        attempts = items(op.env, op.namespace, "prebuiltworkspaces", f"prewarm.dev/preset={name}")
        assert len(attempts) == 3, (name, len(attempts))
        assert len(events(op.env, op.namespace, name, "PrebuildFailureLimitReached")) == 1, name
    for name in cases:
        op.env.kubectl("delete", "preset", name, "-n", op.namespace, "--wait=false")


def _ready_workspace(op: NodeOperator, name: str, besides: set[str]) -> str:
    def ready() -> list[str]:
        return [
            w["metadata"]["name"]
            for w in items(op.env, op.namespace, "prebuiltworkspaces", f"prewarm.dev/preset={name}")
            if (w.get("status") or {}).get("phase") == "Ready"
            and w["metadata"]["name"] not in besides
        ]

    wait_until(lambda: len(ready()) == 1, timeout=300, what=f"a new Ready workspace of {name}")
    return ready()[0]


def test_a_readiness_flap_after_ready_is_a_disruption_not_a_failure(
    node_operator: NodeOperator,
) -> None:
    """Issue 15: the probe reads /tmp/ready; removing it from inside the
    container (three times, the hard limit) makes a Ready workspace lose its
    readiness for the readiness timeout: each time it is disrupted and
    replaced, and the preset stays Normal with no failure on record."""
    op = node_operator
    name = "flappy"
    op.env.apply(
        op.namespace,
        preset(name, 1, workspace_container(op.env.busybox_image), failure_policy=FAST),
    )
    seen: set[str] = set()
    for _ in range(3):
        workspace = _ready_workspace(op, name, seen)
        seen.add(workspace)
        op.env.cluster.kubectl(
            "exec", "-n", op.namespace, workspace, "-c", "workspace", "--", "rm", "/tmp/ready",
            timeout=60,
        )  # fmt: skip
    _ready_workspace(op, name, seen)
    status = preset_status(op.env, op.namespace, name)
    assert status.get("prebuildStatus") in (None, "Normal"), status
    assert status.get("lastFailure") is None, status
    assert events(op.env, op.namespace, name, "PrebuildFailed") == []
    assert events(op.env, op.namespace, name, "PrebuildFailureLimitReached") == []
    left = {
        w["metadata"]["name"]
        for w in items(op.env, op.namespace, "prebuiltworkspaces", f"prewarm.dev/preset={name}")
        if not w["metadata"].get("deletionTimestamp")
    }
    assert not left & seen, "disrupted workspaces are replaced, not kept for inspection"
    op.env.kubectl("delete", "preset", name, "-n", op.namespace, "--wait=false")
