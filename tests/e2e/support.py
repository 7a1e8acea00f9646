"""Small helpers for e2e tests: polling and reading objects through kubectl."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prewarm.devenv.cluster import LocalCluster

T = TypeVar("T")


def wait_until(
    check: Callable[[], T], timeout: float = 60, interval: float = 0.2, what: str = ""
) -> T:
    """Poll until `check()` is truthy; return its value or fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last={last!r}")


def get(cluster: LocalCluster, namespace: str, *what: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "-n", namespace, *what, "-o", "json").stdout
    return dict(json.loads(out))


def items(cluster: LocalCluster, namespace: str, kind: str, selector: str = "") -> list[Any]:
    args = [kind] + (["-l", selector] if selector else [])
    return list(get(cluster, namespace, *args)["items"])


def apply(cluster: LocalCluster, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def create_all(cluster: LocalCluster, namespace: str, manifests: list[dict[str, Any]]) -> None:
    """Create many objects with one kubectl call (a List), as a burst arrives."""
    body = {"apiVersion": "v1", "kind": "List", "items": manifests}
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))


def preset_manifest(
    name: str,
    instances: int,
    labels: dict[str, str] | None = None,
    failure_policy: dict[str, Any] | None = None,
    containers: list[dict[str, Any]] | None = None,
    **prebuilds: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "template": {
            "metadata": {"labels": labels or {}},
            "spec": {"containers": containers or [{"name": "workspace", "image": "busybox:1.37"}]},
        },
        "prebuilds": {"instances": instances, **prebuilds},
    }
    if failure_policy:
        spec["failurePolicy"] = failure_policy
    return {
        "apiVersion": "prewarm.dev/v1alpha1",
        "kind": "Preset",
        "metadata": {"name": name},
        "spec": spec,
    }


def events(cluster: LocalCluster, namespace: str, name: str, reason: str) -> list[Any]:
    found = items(cluster, namespace, "events")
    return [e for e in found if e["involvedObject"]["name"] == name and e["reason"] == reason]


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None if absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def port_left_in_time_wait() -> int:
    """A port on which only a TIME_WAIT socket remains, as right after Ctrl-C
    of `make dev`: the side that closes a connection first keeps one. The
    server listens with SO_REUSEADDR, as kube-apiserver (Go) does."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = int(server.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server side closes first: its socket waits in TIME_WAIT
            client.recv(1)
    return port
