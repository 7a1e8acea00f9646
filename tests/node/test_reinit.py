"""Issue 17 on the real node: the claim's re-initialisation happens *in the workspace*.

The agent sidecar runs the preset's onClaim hook through the exec subresource of
its own pod in each of the hook's containers: a busybox image without Python,
running as its own user. Each test checks the hook's effect from inside the
workspace container (`kubectl exec`): a file owned by that container's user that
names the new owner and a parameter value, written exactly once; and that the
owner's credential reached the hook only as a file.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.node.conftest import NodeOperator
from tests.node.support import get, items, preset_status, wait_until, workspace_container
from tests.plugins.node import REPO

SECRET = "tok-5d1c9e7f3b2a-never-in-the-open"

# Runs in the container: one line per run, with what the hook was given.
HOOK = [
    "/bin/sh",
    "-c",
    'set -e; printf "%s|%s|%s|%s|%s\\n" "$PREWARM_REINIT_GENERATION" "$PREWARM_OWNER" "$PROJECT" '
    '"$(cat "$PREWARM_PARAMETERS_FILE")" "$(stat -c %a:%u "$PREWARM_CREDENTIALS_DIR/token")" '
    ">> /tmp/reinit.log; "
    # What the hook's own process shows (environment, command line): for the leak check.
    'cat /proc/$$/environ /proc/$$/cmdline > "/tmp/hook-process-$PREWARM_REINIT_ATTEMPT"',
]


def _exec(op: NodeOperator, pod: str, container: str, *argv: str) -> tuple[int, str]:
    result = op.env.cluster.kubectl(
        "exec", "-n", op.namespace, pod, "-c", container, "--", *argv, check=False, timeout=120
    )
    return result.returncode, result.stdout + result.stderr


def _container(name: str, image: str, uid: int, volume: str) -> dict[str, Any]:
    c = workspace_container(image)
    c["name"] = name
    c["securityContext"] = {"readOnlyRootFilesystem": True, "runAsUser": uid, "runAsGroup": uid}
    c["volumeMounts"] = [{"name": volume, "mountPath": "/tmp"}]
    c["env"] = [{"name": "PROJECT", "value": f"project-of-{name}"}]
    return c


def _preset(name: str, instances: int, image: str, agent_image: str, hook: list[str]) -> Any:
    return {
        "apiVersion": "prewarm.dev/v1alpha1",
        "kind": "Preset",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "workspace"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        _container("workspace", image, 1000, "tmp"),
                        _container("tools", image, 2000, "tools-tmp"),
                    ],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                        {"name": "tools-tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                    ],
                },
            },
            "prebuilds": {"instances": instances},
            "claimParameters": [{"name": "branch", "default": "main"}],
            "agent": {"image": agent_image, "onClaim": hook, "containers": ["workspace", "tools"]},
        },
    }


def _claim(name: str, preset: str, owner: str, branch: str) -> dict[str, Any]:
    return {
        "apiVersion": "prewarm.dev/v1alpha1",
        "kind": "WorkspaceClaim",
        "metadata": {"name": name},
        "spec": {
            "presetRef": {"name": preset},
            "owner": owner,
            "ownerSecretRef": {"name": "reinit-credentials"},
            "parameters": [{"name": "branch", "value": branch}],
        },
    }


def _timestamp(value: object) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _reinitialized(op: NodeOperator, claim: str, timeout: float = 240) -> dict[str, Any]:
    def done() -> dict[str, Any]:
        status = get(op.env, op.namespace, "workspaceclaim", claim).get("status") or {}
        return status if status.get("reinitializedAt") else {}

    status = wait_until(done, timeout=timeout, what=f"{claim} Reinitialized")
    (condition,) = [c for c in status["conditions"] if c["type"] == "Reinitialized"]
    assert (condition["status"], condition["reason"]) == ("True", "ReinitSucceeded")
    return status


@pytest.fixture(scope="module")
def credentials(node_operator: NodeOperator) -> str:
    op = node_operator
    op.env.kubectl(
        "create", "secret", "generic", "reinit-credentials", "-n", op.namespace,
        f"--from-literal=token={SECRET}",
    )  # fmt: skip
    return SECRET


def _hook_lines(op: NodeOperator, ws: str, container: str) -> list[str]:
    code, out = _exec(op, ws, container, "cat", "/tmp/reinit.log")
    assert code == 0, out
    return out.splitlines()


def test_the_hook_runs_once_in_each_workspace_container_as_its_user(
    node_operator: NodeOperator, credentials: str
) -> None:
    op = node_operator
    image, agent = op.env.busybox_image, op.env.operator_image.ref
    op.env.apply(op.namespace, _preset("twoc", 1, image, agent, HOOK))
    wait_until(
        lambda: preset_status(op.env, op.namespace, "twoc").get("ready") == 1,
        timeout=300,
        what="1 warm two-container workspace",
    )
    op.env.apply(op.namespace, _claim("twoc-alice", "twoc", "alice", "feature-x"))
    status = _reinitialized(op, "twoc-alice")
    assert status["source"] == "prebuilt"
    ws = str(status["workspaceName"])
    seconds = (
        _timestamp(status["reinitializedAt"]) - _timestamp(status["boundAt"])
    ).total_seconds()
    print(f"REINIT_TWO_CONTAINERS_SECONDS {seconds:.3f}")

    pod = get(op.env, op.namespace, "pod", ws)
    annotations = pod["metadata"]["annotations"]
    assert annotations["prewarm.dev/agents"] == "workspace,tools"
    assert annotations["prewarm.dev/reinit-done.workspace"] == "1"
    assert annotations["prewarm.dev/reinit-done.tools"] == "1"
    # In each container, as its user, with its environment and the claim's parameters.
    for container, uid in (("workspace", 1000), ("tools", 2000)):
        (line,) = _hook_lines(op, ws, container)
        generation, owner, project, parameters, mode = line.split("|")
        assert (generation, owner, project) == ("1", "alice", f"project-of-{container}")
        assert json.loads(parameters) == {"branch": "feature-x"}
        assert mode == f"600:{uid}"  # the credential file, the container user's own
        code, owner_uid = _exec(op, ws, container, "stat", "-c", "%u", "/tmp/reinit.log")
        assert (code, owner_uid.strip()) == (0, str(uid))

    # The credential is a file in the workspace and nowhere else: not in any
    # container's environment, the agent's log, the pod, the claim or the Events.
    for container in ("workspace", "tools", "prewarm-agent"):
        code, env_out = _exec(op, ws, container, "env")
        assert code == 0, env_out
        assert credentials not in env_out
    for container in ("workspace", "tools"):
        code, process = _exec(op, ws, container, "cat", "/tmp/hook-process-1")
        assert code == 0, process
        assert "PREWARM_OWNER=alice" in process
        assert credentials not in process  # not in the hook's environment or command line
    code, cred = _exec(op, ws, "workspace", "cat", "/run/prewarm/workspace/gen-1/token")
    assert (code, cred) == (0, credentials)
    code, denied = _exec(op, ws, "tools", "cat", "/run/prewarm/workspace/gen-1/token")
    assert code != 0, denied  # another user's 0700 directory
    agent_log = op.env.kubectl("logs", "-n", op.namespace, ws, "-c", "prewarm-agent")
    assert '"event": "hook_succeeded"' in agent_log or "hook_succeeded" in agent_log
    everything = agent_log + "".join(
        op.env.kubectl("get", kind, "-n", op.namespace, "-o", "json")
        for kind in ("pods", "workspaceclaims", "prebuiltworkspaces", "events")
    )
    assert credentials not in everything

    # Exactly once: a restarted agent container (SIGTERM to its pid 1) runs nothing again.
    restarts = _restarts(op, ws, "prewarm-agent")
    _exec(op, ws, "prewarm-agent", "python3", "-c", "import os, signal; os.kill(1, signal.SIGTERM)")
    wait_until(
        lambda: _restarts(op, ws, "prewarm-agent") > restarts and _ready(op, ws, "prewarm-agent"),
        timeout=120,
        what="the agent container restarted",
    )
    time.sleep(5)
    for container in ("workspace", "tools"):
        assert len(_hook_lines(op, ws, container)) == 1


def _container_status(op: NodeOperator, pod: str, container: str) -> dict[str, Any]:
    statuses = get(op.env, op.namespace, "pod", pod)["status"].get("containerStatuses") or []
    return next((s for s in statuses if s["name"] == container), {})


def _restarts(op: NodeOperator, pod: str, container: str) -> int:
    return int(_container_status(op, pod, container).get("restartCount", 0))


def _ready(op: NodeOperator, pod: str, container: str) -> bool:
    return bool(_container_status(op, pod, container).get("started"))


def test_a_cold_started_workspace_is_initialised_for_its_owner_once(
    node_operator: NodeOperator, credentials: str
) -> None:
    """No warm one (instances 0): the workspace is built for the owner, its pod born
    with generation 1; the hook runs once when the agent starts (docs/agent.md)."""
    op = node_operator
    image, agent = op.env.busybox_image, op.env.operator_image.ref
    op.env.apply(op.namespace, _preset("coldc", 0, image, agent, HOOK))
    op.env.apply(op.namespace, _claim("coldc-carol", "coldc", "carol", "fix-1"))
    status = _reinitialized(op, "coldc-carol", timeout=300)
    assert status["source"] == "cold"
    ws = str(status["workspaceName"])
    for container in ("workspace", "tools"):
        (line,) = _hook_lines(op, ws, container)
        assert line.split("|")[:3] == ["1", "carol", f"project-of-{container}"]
        assert json.loads(line.split("|")[3]) == {"branch": "fix-1"}


def _sample_presets() -> list[Path]:
    samples = sorted((REPO / "crds" / "samples").glob("preset-*.yaml"))
    return [p for p in samples if (yaml.safe_load(p.read_text())["spec"].get("agent") or {})]


def _on_the_node(sample: dict[str, Any], image: str, agent_image: str) -> dict[str, Any]:
    """The sample as shipped, but with the node's images (no registry here), one warm
    instance and requests that fit the node. The hook is the sample's own."""
    preset = copy.deepcopy(sample)
    spec = preset["spec"]
    spec["prebuilds"] = {"instances": 1}
    spec.pop("failurePolicy", None)
    spec["agent"]["image"] = agent_image
    pod = spec["template"]["spec"]
    pod["terminationGracePeriodSeconds"] = 1
    for c in pod["containers"]:
        c["image"] = image
        c["imagePullPolicy"] = "IfNotPresent"
        c["command"] = ["/bin/sh", "-c", "exec sleep 2147483647"]
        c["resources"] = {"requests": {"cpu": "10m", "memory": "16Mi"}}
    return dict(preset)


@pytest.mark.parametrize("path", _sample_presets(), ids=lambda p: p.name)
def test_every_sample_hook_works_in_the_workspace(
    node_operator: NodeOperator, credentials: str, path: Path
) -> None:
    op = node_operator
    sample = yaml.safe_load(path.read_text())
    name = sample["metadata"]["name"]
    preset = _on_the_node(sample, op.env.busybox_image, op.env.operator_image.ref)
    op.env.apply(op.namespace, preset)
    wait_until(
        lambda: preset_status(op.env, op.namespace, name).get("ready") == 1,
        timeout=300,
        what=f"1 warm {name}",
    )
    claim = _claim(f"{name}-dana", name, "dana", "release-2")
    op.env.apply(op.namespace, claim)
    status = _reinitialized(op, claim["metadata"]["name"])
    ws = str(status["workspaceName"])
    container = preset["spec"]["template"]["spec"]["containers"][0]["name"]
    code, out = _exec(op, ws, container, "cat", "/workspace/.prewarm/owner")
    assert code == 0, out
    parameters = {p["name"]: p["value"] for p in sample["spec"]["parameters"]}
    assert out.splitlines() == ["owner=dana", f"repo={parameters['GIT_REPO']}"]
    code, out = _exec(op, ws, container, "cat", "/workspace/.prewarm/parameters.json")
    assert (code, json.loads(out)) == (0, {"branch": "release-2"})
    code, out = _exec(op, ws, container, "stat", "-c", "%u", "/workspace/.prewarm/owner")
    code_id, uid = _exec(op, ws, container, "id", "-u")
    assert (code, code_id, out.strip()) == (0, 0, uid.strip())  # the workspace user's


@pytest.mark.slow
def test_reinit_latency_on_the_real_node(node_operator: NodeOperator, credentials: str) -> None:
    """Measured, not asserted (docs/benchmarks.md): claim Bound to every agent done,
    for a pool of 2-container workspaces, claims one after another."""
    op = node_operator
    samples = int(__import__("os").environ.get("PREWARM_REINIT_SAMPLES", "10"))
    image, agent = op.env.busybox_image, op.env.operator_image.ref
    op.env.apply(op.namespace, _preset("lat", 2, image, agent, ["/bin/true"]))
    latencies: list[float] = []
    exec_seconds: list[float] = []
    for i in range(samples):
        wait_until(
            lambda: (preset_status(op.env, op.namespace, "lat").get("ready") or 0) >= 1,
            timeout=300,
            what="a warm workspace",
        )
        op.env.apply(op.namespace, _claim(f"lat-{i}", "lat", f"user{i}", "main"))
        status = _reinitialized(op, f"lat-{i}")
        if status["source"] != "prebuilt":
            continue
        bound, done = _timestamp(status["boundAt"]), _timestamp(status["reinitializedAt"])
        latencies.append((done - bound).total_seconds())
        log = op.env.kubectl("logs", "-n", op.namespace, str(status["workspaceName"]), "-c",
                             "prewarm-agent")  # fmt: skip
        started_at = observed_at = None
        for line in log.splitlines():
            record = json.loads(line) if line.startswith("{") else {}
            if record.get("event") == "hook_succeeded":
                exec_seconds.append(float(record["seconds"]))
            if record.get("event") == "agent_started" and started_at is None:
                started_at = _timestamp(record["ts"])
            if record.get("event") == "generation_observed" and observed_at is None:
                observed_at = _timestamp(record["ts"])
        # Where the time went: the agent's start and first sight of the claim, from Bound.
        assert started_at is not None
        assert observed_at is not None
        print(
            f"REINIT_SAMPLE {latencies[-1]:.3f} agent_started_after_bound="
            f"{(started_at - bound).total_seconds():.3f} observed_after_bound="
            f"{(observed_at - bound).total_seconds():.3f}"
        )
        op.env.kubectl("delete", "workspaceclaim", "-n", op.namespace, f"lat-{i}", "--wait=false")
    latencies.sort()
    exec_seconds.sort()

    def p(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, round(q * (len(values) - 1)))]

    print(
        f"REINIT_LATENCY n={len(latencies)} p50={statistics.median(latencies):.3f} "
        f"p99={p(latencies, 0.99):.3f} max={latencies[-1]:.3f} all={latencies}"
    )
    print(
        f"EXEC_HOOK_SECONDS n={len(exec_seconds)} p50={statistics.median(exec_seconds):.3f} "
        f"max={exec_seconds[-1]:.3f}"
    )
    assert latencies


def test_spike_shared_volume_fifo_handoff(node_operator: NodeOperator) -> None:
    """The alternative to exec measured on the same node (docs/decisions.md): an
    entrypoint wrapper in the workspace container blocks on a FIFO in a shared
    emptyDir; the sidecar writes a request, the wrapper runs the hook as the
    workspace user and writes `done`. Printed, not asserted."""
    op = node_operator
    image = op.env.busybox_image
    wrapper = (
        # Group-writable: the sidecar (another user) writes it through the fsGroup.
        "mkfifo -m 660 /shared/request; touch /tmp/ready; "
        "while true; do read -r g < /shared/request; "
        'echo "$g $(id -u)" > /shared/hook.out; read -r up _ < /proc/uptime; '
        'echo "$up" > /shared/done; done'
    )
    probe = (
        "i=0; while [ $i -lt 10 ]; do rm -f /shared/done; read -r t0 _ < /proc/uptime; "
        'echo "$i" > /shared/request || exit 1; n=0; '
        "while [ ! -s /shared/done ] && [ $n -lt 100000 ]; do n=$((n+1)); done; "
        'read -r t1 < /shared/done; echo "$t0 $t1"; i=$((i+1)); done'
    )
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "fifo-spike"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"fsGroup": 3000},
            "containers": [
                {
                    **workspace_container(image, command=["/bin/sh", "-c", wrapper]),
                    "securityContext": {"readOnlyRootFilesystem": True, "runAsUser": 1000},
                    "volumeMounts": [
                        {"name": "tmp", "mountPath": "/tmp"},
                        {"name": "shared", "mountPath": "/shared"},
                    ],
                },
                {
                    **workspace_container(image),
                    "name": "agent",
                    "volumeMounts": [
                        {"name": "tmp2", "mountPath": "/tmp"},
                        {"name": "shared", "mountPath": "/shared"},
                    ],
                },
            ],
            "volumes": [
                {"name": n, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
                for n in ("tmp", "tmp2", "shared")
            ],
        },
    }
    for c in pod["spec"]["containers"]:
        c["securityContext"] = {
            **c.get("securityContext", {}),
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    op.env.apply(op.namespace, pod)
    try:
        wait_until(
            lambda: all(
                s.get("ready")
                for s in get(op.env, op.namespace, "pod", "fifo-spike")["status"].get(
                    "containerStatuses", [{}]
                )
            ),
            timeout=180,
            what="the spike pod ready",
        )
        code, out = _exec(op, "fifo-spike", "agent", "/bin/sh", "-c", probe)
        assert code == 0, out
        pairs = [line.split() for line in out.splitlines()]
        deltas = sorted(
            float(p[1]) - float(p[0])
            for p in pairs
            if len(p) == 2 and all(x.replace(".", "", 1).isdigit() for x in p)
        )
        assert len(deltas) >= 5, out
        code, who = _exec(op, "fifo-spike", "workspace", "cat", "/shared/hook.out")
        print(f"FIFO_HANDOFF_SECONDS n={len(deltas)} p50={statistics.median(deltas):.3f} "
              f"max={deltas[-1]:.3f} (10 ms resolution) hook ran as: {who.strip()}")  # fmt: skip
        # The exec path, the same way: `kubectl exec` of a no-op, timed from here
        # (includes kubectl's own start, so an upper bound of the agent's exec).
        times = []
        for _ in range(10):
            start = time.monotonic()
            _exec(op, "fifo-spike", "workspace", "/bin/true")
            times.append(time.monotonic() - start)
        times.sort()
        print(f"KUBECTL_EXEC_SECONDS n=10 p50={statistics.median(times):.3f} max={times[-1]:.3f}")
    finally:
        op.env.kubectl("delete", "pod", "-n", op.namespace, "fifo-spike", "--wait=false")
    assert items(op.env, op.namespace, "pods")


MIDWAY_HOOK = [
    "/bin/sh",
    "-c",
    'echo "start $PREWARM_REINIT_ATTEMPT ${PREWARM_REINIT_RESUMED:-0}" >> /tmp/reinit.log; '
    'if [ "$PREWARM_REINIT_ATTEMPT" -lt 3 ]; then sleep 3600; fi; '
    'echo "done $PREWARM_REINIT_ATTEMPT" >> /tmp/reinit.log',
]


def test_killed_mid_hook_the_run_is_resumed_and_never_doubled(
    node_operator: NodeOperator, credentials: str
) -> None:
    """Exec changes what "killed mid-hook" means (docs/agent.md): the agent dying
    does not stop the hook in the workspace, so the agent's next run must stop it
    first; the workspace container dying kills the hook with it. Both, one after
    the other, end in exactly one completed run, and never two runs at once."""
    op = node_operator
    image, agent = op.env.busybox_image, op.env.operator_image.ref
    preset = _preset("midk", 1, image, agent, MIDWAY_HOOK)
    pod = preset["spec"]["template"]["spec"]
    pod["containers"] = pod["containers"][:1]
    pod["containers"][0]["command"] = [
        "/bin/sh",
        "-c",
        "rm -f /tmp/stop; touch /tmp/ready; while [ ! -f /tmp/stop ]; do sleep 1; done",
    ]
    preset["spec"]["agent"]["containers"] = ["workspace"]
    op.env.apply(op.namespace, preset)
    wait_until(
        lambda: preset_status(op.env, op.namespace, "midk").get("ready") == 1,
        timeout=300,
        what="1 warm workspace",
    )
    op.env.apply(op.namespace, _claim("midk-erin", "midk", "erin", "main"))

    def bound() -> str:
        status = get(op.env, op.namespace, "workspaceclaim", "midk-erin").get("status") or {}
        return str(status.get("workspaceName") or "") if status.get("phase") == "Bound" else ""

    ws = wait_until(bound, timeout=180, what="the claim Bound")

    def lines() -> list[str]:
        code, out = _exec(op, ws, "workspace", "cat", "/tmp/reinit.log")
        return out.splitlines() if code == 0 else []

    wait_until(lambda: lines() == ["start 1 0"], timeout=120, what="attempt 1 running")
    # 1. The agent dies (its container restarts) while the hook sleeps in the workspace.
    _exec(op, ws, "prewarm-agent", "python3", "-c", "import os, signal; os.kill(1, signal.SIGTERM)")
    wait_until(
        lambda: lines() == ["start 1 0", "start 2 1"], timeout=180, what="attempt 2, resumed"
    )
    _, processes = _exec(op, ws, "workspace", "ps", "-o", "pid,args")
    # Attempt 1's hook (and its child) was stopped: one hook shell, one sleep.
    commands = [line.split(None, 1)[-1] for line in processes.splitlines()[1:]]
    assert commands.count("sleep 3600") == 1, processes
    assert sum(c.startswith("/bin/sh -c echo") for c in commands) == 1, processes
    # 2. The workspace container dies while attempt 2 runs: the stream ends without a status.
    _exec(op, ws, "workspace", "touch", "/tmp/stop")
    status = _reinitialized(op, "midk-erin", timeout=240)
    # The container's stop kills the hook; the kubelet reports how it ended (a signal's
    # exit status) or the stream just ends (then the retry is told it resumes).
    run = lines()
    assert run[:2] == ["start 1 0", "start 2 1"], run
    assert run[2] in ("start 3 0", "start 3 1"), run
    assert run[3:] == ["done 3"], run
    assert _restarts(op, ws, "workspace") == 1
    retrying = [
        e
        for e in items(op.env, op.namespace, "events")
        if e["involvedObject"]["name"] == "midk-erin" and e["reason"] == "ReinitRetrying"
    ]
    assert retrying, "no ReinitRetrying Event"
    print(f"CONTAINER_KILLED_MID_HOOK {run[2]!r} event: {retrying[-1]['message'][:300]!r}")
    time.sleep(5)
    assert lines()[-1] == "done 3"
    assert status["reinitializedAt"]
