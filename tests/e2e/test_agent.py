"""The in-pod agent against the real API server, authenticated as its workspace's
ServiceAccount (a bound token minted for the pod), run as a local process.

kwok pods run no containers, so the agent runs here; the test plays the kubelet
for the downward-API file (written in its `key="value"` %q format) and the
operator for the claim (owner secret first, then owner + generation on the pod).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.support import get, wait_until

from prewarm.api.agent_protocol import (
    AGENT_CONTAINER_NAME,
    ANNOTATION_AGENTS,
    HookFailure,
    agent_account_name,
    owner_secret_name,
    reinit_done_annotation,
    reinit_failed_annotation,
    reinit_output_annotation,
)
from prewarm.api.constants import ANNOTATION_OWNER, ANNOTATION_REINIT_GENERATION
from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.processes import stop_process
from prewarm.planning.agent_access import (
    agent_container,
    agent_security_context,
    agent_volumes,
    render_agent_access,
)

REPO = Path(__file__).resolve().parents[2]
DONE = reinit_done_annotation(AGENT_CONTAINER_NAME)
FAILED = reinit_failed_annotation(AGENT_CONTAINER_NAME)
OUTPUT = reinit_output_annotation(AGENT_CONTAINER_NAME)

HOOK = r"""#!/bin/sh
# Test hook: one line per run; fails while the fail counter is positive.
set -eu
secret=$(cat "$PREWARM_CREDENTIALS_DIR/token")
mode=$(stat -c %a "$PREWARM_CREDENTIALS_DIR/token")
echo "configuring for $PREWARM_OWNER with $secret"
printf '%s|%s|%s|%s|%s\n' "$PREWARM_REINIT_GENERATION" "$PREWARM_OWNER" \
    "${PREWARM_REINIT_RESUMED:-0}" "$secret" "$mode" >> "$HOOK_RUNS"
if [ -f "$HOOK_FAILS" ]; then
    n=$(cat "$HOOK_FAILS")
    if [ "$n" -gt 0 ]; then
        echo $((n - 1)) > "$HOOK_FAILS"
        exit 3
    fi
fi
"""


def go_quote(value: str) -> str:
    """Enough of Go's %q for the test: printable text plus the common escapes."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class Workspace:
    """A PrebuiltWorkspace, its agent access objects and its (kwok) pod."""

    def __init__(self, cluster: LocalCluster, namespace: str, name: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        ws = self.kubectl_json(
            "create",
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": "prewarm.dev/v1alpha1",
                    "kind": "PrebuiltWorkspace",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"presetRef": {"name": "agent-test"}, "templateHash": "abcdef"},
                }
            ),
        )
        for manifest in render_agent_access(namespace, name, ws["metadata"]["uid"]):
            self.kubectl_json("create", "-f", "-", input=json.dumps(manifest))
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {ANNOTATION_AGENTS: AGENT_CONTAINER_NAME},
            },
            "spec": {
                "serviceAccountName": agent_account_name(name),
                "containers": [
                    {
                        "name": "workspace",
                        "image": "busybox:1.37",
                        "securityContext": agent_security_context(),
                    },
                    agent_container("prewarm:test", on_claim=["/hooks/on-claim"]),
                ],
                "volumes": agent_volumes(),
            },
        }
        self.pod = self.kubectl_json("create", "-f", "-", input=json.dumps(pod))

    def kubectl_json(self, *args: str, input: str | None = None) -> dict[str, Any]:
        result = self.cluster.kubectl(
            *args, "-n", self.namespace, "-o", "json", input=input, check=False
        )
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return dict(json.loads(result.stdout))

    def annotations(self) -> dict[str, str]:
        pod = get(self.cluster, self.namespace, "pod", self.name)
        return dict(pod["metadata"].get("annotations") or {})

    def claim(self, owner: str, generation: int, secret: str) -> None:
        """What the operator does: owner secret first, then owner + generation on the pod."""
        patch = {"stringData": {"token": secret}}
        self.cluster.kubectl(
            "patch", "secret", owner_secret_name(self.name), "-n", self.namespace,
            "--type=merge", "-p", json.dumps(patch),
        )  # fmt: skip
        annotations = {ANNOTATION_OWNER: owner, ANNOTATION_REINIT_GENERATION: str(generation)}
        self.cluster.kubectl(
            "patch", "pod", self.name, "-n", self.namespace,
            "--type=merge", "-p", json.dumps({"metadata": {"annotations": annotations}}),
        )  # fmt: skip

    def agent_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig with a token of `<ws>-agent` bound to the pod."""
        token = self.cluster.kubectl(
            "create", "token", agent_account_name(self.name), "-n", self.namespace,
            "--bound-object-kind", "Pod", "--bound-object-name", self.name,
            "--bound-object-uid", self.pod["metadata"]["uid"], "--duration", "1h",
        ).stdout.strip()  # fmt: skip
        admin = yaml.safe_load(self.cluster.kubeconfig.read_text())
        cluster_entry = dict(admin["clusters"][0]["cluster"])
        ca = cluster_entry.get("certificate-authority")
        if ca and not Path(ca).is_absolute():
            cluster_entry["certificate-authority"] = str(self.cluster.kubeconfig.parent / ca)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": cluster_entry}],
            "users": [{"name": "agent", "user": {"token": token}}],
            "contexts": [
                {"name": "agent", "context": {"cluster": "c", "user": "agent", "namespace": ""}}
            ],
            "current-context": "agent",
        }
        config["contexts"][0]["context"]["namespace"] = self.namespace
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


class AgentProcess:
    def __init__(self, ws: Workspace, workdir: Path, **env: str) -> None:
        self.ws = ws
        self.workdir = workdir
        self.podinfo = workdir / "podinfo" / "annotations"
        self.runs = workdir / "runs.log"
        self.fails = workdir / "fails"
        self.ready = workdir / "ready"
        hook = workdir / "on-claim.sh"
        hook.write_text(HOOK)
        hook.chmod(0o755)
        kubeconfig = ws.agent_kubeconfig(workdir / "agent.kubeconfig")
        base = {
            k: v
            for k, v in os.environ.items()
            if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST") and not k.startswith("PREWARM_")
        }
        self.env = {
            **base,
            "PYTHONPATH": str(REPO / "operator"),
            "KUBECONFIG": str(kubeconfig),
            "PREWARM_POD_NAME": ws.name,
            "PREWARM_POD_NAMESPACE": ws.namespace,
            "PREWARM_CONTAINER": AGENT_CONTAINER_NAME,
            "PREWARM_PODINFO": str(self.podinfo),
            "PREWARM_STATE_DIR": str(workdir / "state"),
            "PREWARM_CREDENTIALS_ROOT": str(workdir / "credentials"),
            "PREWARM_ON_CLAIM": json.dumps([str(hook)]),
            "PREWARM_AGENT_POLL_SECONDS": "0.2",
            "PREWARM_AGENT_BACKOFF_SECONDS": "1",
            "PREWARM_AGENT_READY_FILE": str(self.ready),
            "HOOK_RUNS": str(self.runs),
            "HOOK_FAILS": str(self.fails),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.logs: list[Path] = []

    def start(self, **env: str) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        log = self.workdir / f"agent-{self.starts}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "prewarm.agent"],
                env={**self.env, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.wait_event("agent_started")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        stop_process(self.proc, timeout_s=15)

    def all_log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def events(self) -> list[dict[str, Any]]:
        """The current process's log records; every line must be one JSON object."""
        found = []
        for line in self.logs[-1].read_text().splitlines():
            found.append(json.loads(line))
        return found

    def wait_event(self, event: str, timeout: float = 30, **fields: Any) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"agent exited {self.proc.returncode}:\n{self.all_log_text()[-3000:]}"
                )
            for record in self.events():
                if record["event"] == event and all(record.get(k) == v for k, v in fields.items()):
                    return record
            return None

        return wait_until(check, timeout=timeout, what=f"agent log event {event} {fields}")

    def sync_podinfo(self) -> None:
        """Play the kubelet: write the pod's annotations in the downward-API format."""
        annotations = self.ws.annotations()
        text = "".join(f"{k}={go_quote(v)}\n" for k, v in sorted(annotations.items()))
        self.podinfo.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.podinfo.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.rename(self.podinfo)

    def runs_list(self) -> list[list[str]]:
        if not self.runs.exists():
            return []
        return [line.split("|") for line in self.runs.read_text().splitlines()]


@pytest.fixture
def make_agent(tmp_path: Path) -> Any:
    started: list[AgentProcess] = []

    def make(ws: Workspace, **env: str) -> AgentProcess:
        workdir = tmp_path / f"agent-{ws.name}-{len(started)}"
        workdir.mkdir()
        agent = AgentProcess(ws, workdir, **env)
        started.append(agent)
        return agent

    yield make
    for agent in started:
        agent.stop()


def wait_done(ws: Workspace, generation: int, timeout: float = 30) -> dict[str, str]:
    return wait_until(
        lambda: (a := ws.annotations()).get(DONE) == str(generation) and a,
        timeout=timeout,
        what=f"{DONE}={generation}",
    )


def settle(agent: AgentProcess, generation: int) -> None:
    """Wait until the running agent has seen `generation` from both the API and the file,
    and then a little longer, so a wrong re-run would have happened."""
    agent.wait_event("generation_observed", source="api", generation=generation)
    agent.wait_event("generation_observed", source="file", generation=generation)
    time.sleep(1.5)


def test_claim_runs_the_hook_exactly_once_per_generation_across_kills(
    cluster: LocalCluster, namespace: str, make_agent: Any
) -> None:
    ws = Workspace(cluster, namespace, "ws-a")
    agent = make_agent(ws)
    agent.sync_podinfo()
    agent.start()
    # Ready (the container's startup probe reads the file) once it watches its pod.
    agent.wait_event("agent_ready")
    assert agent.ready.exists()
    # In the pool (no generation): nothing to do, whatever happens.
    time.sleep(0.5)
    agent.kill()  # killed before any claim
    agent.start()
    agent.wait_event("agent_ready")  # removed at start, written again once watching
    assert agent.runs_list() == []

    secret1 = f"s3cr3t-{uuid.uuid4().hex}"
    ws.claim("alice", 1, secret1)  # the API watch sees it; the file is still stale
    done = wait_done(ws, 1)
    assert FAILED not in done
    assert agent.runs_list() == [["1", "alice", "0", secret1, "600"]]

    # Killed after the report: a restart (relist, file) must not re-run generation 1.
    agent.kill()
    agent.sync_podinfo()
    agent.start()
    settle(agent, 1)
    assert len(agent.runs_list()) == 1

    # Killed after recording done but before reporting: re-reported, not re-run.
    agent.kill()
    agent.start(PREWARM_AGENT_TEST_CHECKPOINT="after-record")
    secret2 = f"s3cr3t-{uuid.uuid4().hex}"
    ws.claim("bob", 2, secret2)
    agent.wait_event("checkpoint", name="after-record")
    assert ws.annotations()[DONE] == "1"
    agent.kill()
    agent.start()
    wait_done(ws, 2)
    agent.sync_podinfo()
    settle(agent, 2)
    assert agent.runs_list()[1:] == [["2", "bob", "0", secret2, "600"]]

    # Killed after the hook but before recording it: the documented at-least-once
    # window; the hook runs again, told so by PREWARM_REINIT_RESUMED=1.
    agent.kill()
    agent.start(PREWARM_AGENT_TEST_CHECKPOINT="after-hook")
    secret3 = f"s3cr3t-{uuid.uuid4().hex}"
    ws.claim("carol", 3, secret3)
    agent.wait_event("checkpoint", name="after-hook")
    agent.kill()
    agent.start()
    wait_done(ws, 3)
    agent.sync_podinfo()
    settle(agent, 3)
    assert agent.runs_list()[2:] == [
        ["3", "carol", "0", secret3, "600"],
        ["3", "carol", "1", secret3, "600"],
    ]

    # Only the newest generation's credentials (and its claim parameters) stay on disk.
    creds = sorted(p.name for p in (agent.workdir / "credentials").iterdir())
    assert creds == ["gen-3", "parameters-gen-3.json"]

    # No credential leaks: not in annotations, not in events, not in the agent's logs
    # (the hook printed them; the agent redacted its output).
    pod_text = json.dumps(get(cluster, namespace, "pod", ws.name)["metadata"])
    events_text = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    logs = agent.all_log_text()
    for secret in (secret1, secret2, secret3):
        assert secret not in pod_text
        assert secret not in events_text
        assert secret not in logs
    assert "configuring for carol with [REDACTED]" in logs
    for path in agent.logs:  # structured: one JSON object per line
        for line in path.read_text().splitlines():
            assert isinstance(json.loads(line), dict), line


def test_file_only_path_picks_up_a_newer_generation(
    cluster: LocalCluster, namespace: str, make_agent: Any
) -> None:
    """With the pod watch off, the downward-API file alone drives the agent."""
    ws = Workspace(cluster, namespace, "ws-f")
    agent = make_agent(ws, PREWARM_AGENT_USE_API="false")
    agent.start()
    ws.claim("dave", 4, "file-secret-value")
    time.sleep(1.5)
    assert agent.runs_list() == [], "ran without the file: the watch is supposed to be off"
    agent.sync_podinfo()
    wait_done(ws, 4)
    assert agent.runs_list() == [["4", "dave", "0", "file-secret-value", "600"]]
    ws.claim("erin", 5, "file-secret-value-2")
    agent.sync_podinfo()
    wait_done(ws, 5)
    time.sleep(1)
    assert [r[:2] for r in agent.runs_list()] == [["4", "dave"], ["5", "erin"]]


def test_a_failing_hook_is_reported_retried_and_bounded(
    cluster: LocalCluster, namespace: str, make_agent: Any
) -> None:
    ws = Workspace(cluster, namespace, "ws-x")
    agent = make_agent(ws)
    agent.fails.write_text("5")  # 3 failures for gen 1 (gives up), then 2 for gen 2
    agent.start()
    ws.claim("frank", 1, "failing-secret-1")
    agent.wait_event("hook_gave_up", generation=1, timeout=30)
    annotations = ws.annotations()
    assert annotations[FAILED] == "1: exit status 3 (gave up after 3 attempts)"
    assert DONE not in annotations
    # The last run's details, with the tail of its output redacted (the hook printed
    # the credential): what the operator shows on the claim.
    details = HookFailure.parse(annotations[OUTPUT])
    assert details == HookFailure(1, 3, 3, False, "configuring for frank with [REDACTED]")
    assert "failing-secret-1" not in json.dumps(annotations)
    assert [r[0] for r in agent.runs_list()] == ["1", "1", "1"]
    # A restart does not try an exhausted generation again.
    agent.kill()
    agent.start()
    agent.wait_event("hook_gave_up", generation=1)
    assert len(agent.runs_list()) == 3

    ws.claim("grace", 2, "failing-secret-2")
    wait_until(lambda: ws.annotations().get(FAILED) == "2: exit status 3", what="failure of gen 2")
    annotations = wait_done(ws, 2)
    assert FAILED not in annotations
    assert OUTPUT not in annotations  # a completed generation clears the failure's details
    assert [r[0] for r in agent.runs_list()] == ["1", "1", "1", "2", "2", "2"]


def _can_i(cluster: LocalCluster, namespace: str, account: str, *what: str) -> bool:
    result = cluster.kubectl(
        "auth", "can-i", *what, "-n", namespace,
        f"--as=system:serviceaccount:{namespace}:{account}", check=False,
    )  # fmt: skip
    assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
    return result.stdout.strip() == "yes"


def test_agent_credentials_reach_only_their_own_workspace(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    a = Workspace(cluster, namespace, "ws-a")
    b = Workspace(cluster, namespace, "ws-b")
    account = agent_account_name("ws-a")
    matrix = {
        ("get", "pod/ws-a"): True,
        ("patch", "pod/ws-a"): True,
        ("watch", "pod/ws-a"): True,
        ("list", "pod/ws-a"): True,
        ("get", "secret/ws-a-owner"): True,
        ("get", "pod/ws-b"): False,
        ("patch", "pod/ws-b"): False,
        ("get", "secret/ws-b-owner"): False,
        ("list", "pods"): False,
        ("list", "secrets"): False,
        ("update", "pod/ws-a"): False,
        ("delete", "pod/ws-a"): False,
        ("create", "pods"): False,
        ("patch", "secret/ws-a-owner"): False,
        ("get", "secret/ws-a-agent-token"): False,
        ("get", "prebuiltworkspaces.prewarm.dev/ws-a"): False,
        ("create", "serviceaccounts/token"): False,
        # The hook runs in the workspace's containers: exec into its own pod only.
        ("create", "pod/ws-a", "--subresource=exec"): True,
        ("get", "pod/ws-a", "--subresource=exec"): True,
        ("create", "pod/ws-b", "--subresource=exec"): False,
        ("create", "pods", "--subresource=exec"): False,
        ("create", "pod/ws-a", "--subresource=attach"): False,
    }
    observed = {k: _can_i(cluster, namespace, account, *k) for k in matrix}
    assert observed == matrix

    # Real requests with the agent's own (pod-bound) token.
    kubeconfig = a.agent_kubeconfig(tmp_path / "a.kubeconfig")

    def as_agent(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(cluster.binaries.kubectl), "--kubeconfig", str(kubeconfig), "-n", namespace,
             *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    own = as_agent("get", "pod", "ws-a", "-o", "name")
    assert own.returncode == 0, own.stderr
    assert as_agent("get", "secret", "ws-a-owner", "-o", "name").returncode == 0
    denied = [
        ("get", "pod", "ws-b"),
        ("get", "secret", "ws-b-owner"),
        ("patch", "pod", "ws-b", "--type=merge", "-p", '{"metadata":{"annotations":{"x":"y"}}}'),
        ("get", "pods"),
        ("delete", "pod", "ws-a", "--wait=false"),
    ]
    for args in denied:
        result = as_agent(*args)
        assert result.returncode != 0, f"{args} was allowed"
        assert "forbidden" in result.stderr.lower(), result.stderr
    assert b.annotations().get("x") is None
    assert get(cluster, namespace, "pod", "ws-a")["metadata"].get("deletionTimestamp") is None


def test_rendered_agent_pod_passes_restricted_pod_security(
    cluster: LocalCluster, namespace: str
) -> None:
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    ws = Workspace(cluster, namespace, "ws-r")  # the pod create is admitted
    assert [c["name"] for c in ws.pod["spec"]["containers"]] == ["workspace", "prewarm-agent"]
    # The label is enforced: a pod without the agent's securityContext is rejected.
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]},
    }
    result = cluster.kubectl(
        "create", "-n", namespace, "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False
    )
    assert result.returncode != 0
    assert "restricted" in result.stderr


def test_an_agent_that_cannot_exec_into_its_workspace_says_so_on_the_pod(
    cluster: LocalCluster, namespace: str, make_agent: Any
) -> None:
    """The rendered agent runs the hook in the workspace container through the exec
    subresource. kwok pods have no kubelet to exec into: the agent must report that
    as a failed run with a clear reason (and give up after its attempts), never hang
    or run the hook anywhere else. The real exec is tested on the real node."""
    ws = Workspace(cluster, namespace, "ws-e")
    agent = make_agent(
        ws,
        PREWARM_AGENT_EXEC_CONTAINERS="workspace",
        PREWARM_AGENT_MAX_ATTEMPTS="2",
        PREWARM_AGENT_BACKOFF_SECONDS="0.2",
    )
    agent.start()
    ws.claim("ivan", 1, "exec-secret-value-1")
    agent.wait_event("hook_gave_up", generation=1, timeout=60)
    annotations = ws.annotations()
    failed = annotations[reinit_failed_annotation("workspace")]
    # kwok's stand-in for the kubelet answers the exec with an error: the reason says so.
    assert failed.startswith("1: exec failed: "), failed
    assert 'no exec found for container "workspace"' in failed, failed
    assert failed.endswith(" (gave up after 2 attempts)"), failed
    assert reinit_done_annotation("workspace") not in annotations
    assert agent.runs_list() == []  # nothing ran in the agent's own container instead
    assert "exec-secret-value-1" not in agent.all_log_text() + json.dumps(annotations)
