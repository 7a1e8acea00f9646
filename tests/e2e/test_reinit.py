"""Issue 17: a failing re-init hook is visible where the user looks, with the operator
and the agent together (the agent as a local process, as in test_agent.py: kwok pods
run no containers, so nothing can be exec'd into: the agent runs the hook itself,
reporting under the name of the workspace container it would exec into; the
exec path is tested on the real node, tests/node/test_reinit.py). The claim's
Reinitialized condition, a Warning Event, a metric and `prewarm claim --wait` say
it; a hook that succeeds makes the claim Reinitialized and counts in the latency
histogram. No credential reaches any of them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.support import apply, events, get, metric, preset_manifest, wait_until
from tests.e2e.test_agent import REPO, AgentProcess, Workspace

from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess

SECRET = "tok-6a1f0e2d9c8b7a65-never-shown"


class ClaimedWorkspace(Workspace):
    """A workspace the operator made (its agent access objects included)."""

    def __init__(self, cluster: LocalCluster, namespace: str, name: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.pod = get(cluster, namespace, "pod", name)


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    started: list[AgentProcess] = []

    def make(ws: Workspace, **env: str) -> AgentProcess:
        workdir = tmp_path / f"agent-{ws.name}"
        workdir.mkdir()
        # The operator's pod lists the hook's container (the first one) as its agent.
        env = {"PREWARM_CONTAINER": "workspace", **env}
        started.append(AgentProcess(ws, workdir, **env))
        return started[-1]

    yield make
    for agent in started:
        agent.stop()


def _claim_in_background(op: OperatorProcess, namespace: str, owner: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "operator"),
        "KUBECONFIG": str(op.cluster.kubeconfig),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "prewarm", "claim", "--preset", "hooked", "--owner", owner,
         "--secret", "creds", "-n", namespace, "--wait", "--timeout", "120"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _bound(cluster: LocalCluster, namespace: str, owner: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        claims = json.loads(
            cluster.kubectl("get", "workspaceclaims", "-n", namespace, "-o", "json").stdout
        )["items"]
        for c in claims:
            if c["spec"]["owner"] == owner and (c.get("status") or {}).get("phase") == "Bound":
                return dict(c)
        return None

    return wait_until(find, timeout=60, what=f"{owner}'s claim Bound")


def _reinit(claim: dict[str, Any]) -> dict[str, Any]:
    conditions = (claim.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Reinitialized"), {})


def test_a_hook_that_gives_up_fails_the_claim_visibly_and_one_that_succeeds_does_not(
    cluster: LocalCluster,
    namespace: str,
    operator: OperatorProcess,
    agents: Callable[..., AgentProcess],
) -> None:
    preset = preset_manifest("hooked", 1)
    preset["spec"]["agent"] = {"onClaim": ["/hooks/on-claim"]}
    apply(cluster, namespace, preset)
    wait_until(
        lambda: (get(cluster, namespace, "preset", "hooked").get("status") or {}).get("ready") == 1,
        what="1 warm",
    )
    cluster.kubectl(
        "create", "secret", "generic", "creds", "-n", namespace, f"--from-literal=token={SECRET}"
    )

    # 1. The hook fails twice (the agent's limit here): ReinitRetrying, then ReinitFailed.
    waiting = _claim_in_background(operator, namespace, "frank")
    claim = _bound(cluster, namespace, "frank")
    name, ws_name = claim["metadata"]["name"], claim["status"]["workspaceName"]
    # Bound and Reinitialized: Unknown arrive together: the CLI knows to keep waiting.
    assert _reinit(claim)["status"] == "Unknown"
    assert _reinit(claim)["reason"] == "ReinitPending"
    agent = agents(
        ClaimedWorkspace(cluster, namespace, ws_name),
        PREWARM_AGENT_MAX_ATTEMPTS="2",
        PREWARM_AGENT_BACKOFF_SECONDS="0.5",
    )
    agent.fails.write_text("2")
    agent.start()
    agent.wait_event("hook_gave_up", generation=1)

    def failed() -> dict[str, Any] | None:
        c = _reinit(get(cluster, namespace, "workspaceclaim", name))
        return c if c.get("reason") == "ReinitFailed" else None

    condition = wait_until(failed, timeout=30, what="Reinitialized False, ReinitFailed")
    assert condition["status"] == "False"
    assert "agent workspace: exit status 3 (attempt 2 of 2); gave up" in condition["message"]
    assert "delete the claim to release it" in condition["message"]
    # The redacted tail of the hook's output.
    assert condition["message"].endswith("configuring for frank with [REDACTED]")

    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 1, (out, err)
    assert f"workspaceclaim/{name} Bound: workspace {ws_name} (prebuilt)" in out
    assert "; ReinitFailed: agent workspace: exit status 3 (attempt 2 of 2); gave up" in out

    warnings = {e["reason"]: e for e in items_of(cluster, namespace, name)}
    assert warnings["ReinitRetrying"]["type"] == "Warning"
    assert warnings["ReinitFailed"]["type"] == "Warning"
    assert "[REDACTED]" in warnings["ReinitFailed"]["message"]
    text = operator.metrics()
    labels = {"namespace": namespace, "preset": "hooked"}
    assert (
        metric(text, "prewarm_claim_reinit_failures_total", reason="ReinitRetrying", **labels) == 1
    )
    assert metric(text, "prewarm_claim_reinit_failures_total", reason="ReinitFailed", **labels) == 1
    # Nothing more happens for this claim: the agent gave up, the claim says so and stays.
    time.sleep(1)
    assert failed() is not None
    assert metric(operator.metrics(), "prewarm_claim_reinit_failures_total",
                  reason="ReinitFailed", **labels) == 1  # fmt: skip

    # 2. The refilled pool's next workspace: the hook succeeds.
    wait_until(
        lambda: (get(cluster, namespace, "preset", "hooked").get("status") or {}).get("ready") == 1,
        what="the pool refilled",
    )
    waiting = _claim_in_background(operator, namespace, "grace")
    claim = _bound(cluster, namespace, "grace")
    second = agents(ClaimedWorkspace(cluster, namespace, claim["status"]["workspaceName"]))
    second.start()
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, (out, err)
    assert " Bound reinitialized: workspace " in out
    done = _reinit(get(cluster, namespace, "workspaceclaim", claim["metadata"]["name"]))
    assert (done["status"], done["reason"]) == ("True", "ReinitSucceeded")
    count = metric(operator.metrics(), "prewarm_claim_reinit_seconds_count", **labels)
    assert count == 1

    # No credential anywhere the user or an operator looks.
    everything = "".join(
        cluster.kubectl("get", kind, "-n", namespace, "-o", "json").stdout
        for kind in ("workspaceclaims", "events", "pods", "prebuiltworkspaces")
    )
    logs = operator.log_text() + agent.all_log_text() + second.all_log_text()
    for text in (everything, logs, out, err):
        assert SECRET not in text


def items_of(cluster: LocalCluster, namespace: str, claim: str) -> list[dict[str, Any]]:
    found = []
    for reason in ("ReinitRetrying", "ReinitFailed"):
        found += events(cluster, namespace, claim, reason)
    return found


def test_a_take_cut_off_before_the_credentials_copy_still_hands_them_to_the_agent(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    """The operator killed right after its take of a warm workspace (the one write
    that makes it the claim's), before it copied the owner's credentials: the next
    operator finishes the take, and the agent must find the credentials in
    `<ws>-owner` before the pod shows the generation. Found while checking issue
    17's "exactly once when the operator is killed at any step": the finishing pass
    annotated the pod without copying them, so the hook ran once, without them."""
    preset = preset_manifest("cut", 1)
    preset["spec"]["agent"] = {"onClaim": ["/hooks/on-claim"]}
    apply(cluster, namespace, preset)
    wait_until(
        lambda: (get(cluster, namespace, "preset", "cut").get("status") or {}).get("ready") == 1,
        what="1 warm",
    )
    (ws,) = json.loads(
        cluster.kubectl("get", "prebuiltworkspaces", "-n", namespace, "-o", "json").stdout
    )["items"]
    name = ws["metadata"]["name"]
    operator.stop()
    cluster.kubectl(
        "create", "secret", "generic", "creds", "-n", namespace, f"--from-literal=token={SECRET}"
    )
    claim = {
        "apiVersion": "prewarm.dev/v1alpha1",
        "kind": "WorkspaceClaim",
        "metadata": {"name": "judy"},
        "spec": {
            "presetRef": {"name": "cut"},
            "owner": "judy",
            "ownerSecretRef": {"name": "creds"},
        },
    }
    apply(cluster, namespace, claim)
    uid = get(cluster, namespace, "workspaceclaim", "judy")["metadata"]["uid"]
    # Exactly what the take writes (handlers/claims.py _take_patch), and nothing after it.
    take = {
        "metadata": {
            "labels": {"prewarm.dev/claim": "judy"},
            "ownerReferences": [
                {"apiVersion": "prewarm.dev/v1alpha1", "kind": "WorkspaceClaim", "name": "judy",
                 "uid": uid, "controller": True, "blockOwnerDeletion": True}
            ],
        },
        "spec": {"owner": "judy", "claimRef": {"name": "judy", "uid": uid}},
    }  # fmt: skip
    cluster.kubectl(
        "patch", "prebuiltworkspace", name, "-n", namespace, "--type=merge", "-p", json.dumps(take)
    )
    operator.start()
    claimed = _bound(cluster, namespace, "judy")
    assert claimed["status"]["workspaceName"] == name
    annotations = get(cluster, namespace, "pod", name)["metadata"]["annotations"]
    assert (annotations["prewarm.dev/owner"], annotations["prewarm.dev/reinit-generation"]) == (
        "judy",
        "1",
    )
    secret = get(cluster, namespace, "secret", f"{name}-owner")
    assert base64.b64decode(secret["data"]["token"]).decode() == SECRET
