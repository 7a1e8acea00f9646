"""Helpers of the node tier: manifests of real workspaces and reading objects."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tests.e2e.support import preset_manifest
from tests.plugins.node import NodeEnv

T = TypeVar("T")

# The agent runs the hook in the workspace container (through exec): it appends
# one line per run into that container's /tmp (an emptyDir of the pod), which
# the test reads back with `kubectl exec`.
REINIT_HOOK = [
    "/bin/sh",
    "-c",
    'echo "$PREWARM_REINIT_GENERATION $PREWARM_OWNER" >> /tmp/reinit.log',
]


def wait_until(check: Callable[[], T], timeout: float = 180, what: str = "") -> T:
    """Poll until `check()` is truthy (generous timeouts: the CPU is shared)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last={last!r}")


def get(env: NodeEnv, namespace: str, *what: str) -> dict[str, Any]:
    return dict(json.loads(env.kubectl("get", "-n", namespace, *what, "-o", "json")))


def items(env: NodeEnv, namespace: str, kind: str, selector: str = "") -> list[Any]:
    args = [kind] + (["-l", selector] if selector else [])
    return list(get(env, namespace, *args)["items"])


def events(env: NodeEnv, namespace: str, name: str, reason: str) -> list[Any]:
    return [
        e
        for e in items(env, namespace, "events")
        if e["involvedObject"]["name"] == name and e["reason"] == reason
    ]


def preset_status(env: NodeEnv, namespace: str, name: str) -> dict[str, Any]:
    return dict(get(env, namespace, "preset", name).get("status") or {})


def workspace_container(
    image: str,
    command: list[str] | None = None,
    readiness: list[str] | None = None,
    memory: str = "32Mi",
) -> dict[str, Any]:
    """A real workspace: busybox that marks itself ready, with an exec readiness probe."""
    return {
        "name": "workspace",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command or ["/bin/sh", "-c", "touch /tmp/ready && exec sleep 2147483647"],
        "readinessProbe": {
            "exec": {"command": readiness or ["cat", "/tmp/ready"]},
            "periodSeconds": 1,
        },
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": memory}},
        "securityContext": {"readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def preset(
    name: str,
    instances: int,
    container: dict[str, Any],
    agent_image: str = "",
    failure_policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The e2e tier's preset, with a real container, a memory-backed /tmp and the agent."""
    manifest = preset_manifest(
        name,
        instances,
        labels={"app.kubernetes.io/name": "workspace"},
        failure_policy=failure_policy,
        containers=[container],
    )
    pod = manifest["spec"]["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = 1
    pod["volumes"] = [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]
    if agent_image:
        manifest["spec"]["agent"] = {"image": agent_image, "onClaim": REINIT_HOOK}
    return manifest


def ready_pods(env: NodeEnv, namespace: str, selector: str) -> list[Any]:
    """Pods matching `selector` that are Running and Ready on the real node."""
    return [
        p
        for p in items(env, namespace, "pods", selector)
        if p["status"].get("phase") == "Running"
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
        and not p["metadata"].get("deletionTimestamp")
    ]
