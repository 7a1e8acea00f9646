"""The `prewarm` CLI against the real cluster and ledger."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from tests.e2e.support import apply, events, get, preset_manifest, wait_until

from prewarm.api.constants import PLURAL_WORKSPACE_CLAIMS
from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess
from prewarm.k8s.client import Kube

REPO = Path(__file__).resolve().parents[2]


def _cli(op: OperatorProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "operator"),
        "KUBECONFIG": str(op.cluster.kubeconfig),
        "PREWARM_DATABASE_URL": op.dsn,
    }
    return subprocess.run(
        [sys.executable, "-m", "prewarm", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _warm_pool(cluster: LocalCluster, namespace: str, preset: str, warm: int) -> None:
    apply(cluster, namespace, preset_manifest(preset, warm))
    wait_until(
        lambda: (
            (get(cluster, namespace, "preset", preset).get("status") or {}).get("ready") == warm
        ),
        what=f"{warm} warm",
    )


def test_claim_status_history_and_reset(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    _warm_pool(cluster, namespace, "cli", 1)
    result = _cli(operator, "claim", "--preset", "cli", "--owner", "ann", "-n", namespace, "--wait")
    assert result.returncode == 0, result.stderr
    assert "Bound" in result.stdout
    assert "(prebuilt)" in result.stdout
    assert " ms" in result.stdout

    status = _cli(operator, "status", "-n", namespace)
    assert status.returncode == 0, status.stderr
    header, row = status.stdout.splitlines()[:2]
    assert header.split()[:4] == ["NAMESPACE", "PRESET", "DESIRED", "READY"]
    assert row.split()[:2] == [namespace, "cli"]
    assert "Recent claims" in status.stdout
    assert "ann" in status.stdout

    apply(
        cluster,
        namespace,
        preset_manifest(
            "bad",
            1,
            labels={"sim.prewarm.dev/behavior": "fail"},
            failure_policy={"backoffBase": "1s"},
        ),
    )
    wait_until(
        lambda: (
            (get(cluster, namespace, "preset", "bad").get("status") or {}).get("prebuildStatus")
            == "HardLimited"
        ),
        what="HardLimited",
    )
    history = _cli(operator, "history", "bad", "-n", namespace)
    assert history.returncode == 0, history.stderr
    assert history.stdout.count("PodFailed") == 3
    assert "simulated failure" in history.stdout

    reset = _cli(operator, "reset", "bad", "-n", namespace, "--token", "t1")
    assert reset.returncode == 0, reset.stderr
    annotations = get(cluster, namespace, "preset", "bad")["metadata"]["annotations"]
    assert annotations["prewarm.dev/retry"] == "t1"

    wait_until(
        lambda: events(cluster, namespace, "bad", "PrebuildRetryRequested"), what="retry Event"
    )


def test_a_claim_watch_ends_cleanly_at_its_server_timeout(
    cluster: LocalCluster, namespace: str, monkeypatch: Any
) -> None:
    # `prewarm claim --wait` re-watches when a watch ends; a watch must end
    # (not raise when the client's 5-minute request timeout cuts the stream).
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))

    async def one_watch() -> float:
        kube = await Kube.connect(os.environ.get("KUBECONFIG"))
        started = time.perf_counter()
        try:
            async for _ in kube.watch_objects(PLURAL_WORKSPACE_CLAIMS, namespace, timeout_s=1):
                pass
        finally:
            await kube.close()
        return time.perf_counter() - started

    assert asyncio.run(one_watch()) < 30


def test_item7_claim_for_an_email_or_a_full_name_binds_and_api_errors_are_one_line(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    _warm_pool(cluster, namespace, "mail", 2)
    for owner in ("alice@example.com", "Alice Smith"):
        result = _cli(
            operator, "claim", "--preset", "mail", "--owner", owner, "-n", namespace, "--wait"
        )
        assert result.returncode == 0, result.stderr
        assert "Bound" in result.stdout, result.stdout
        name = result.stdout.split()[0].removeprefix("workspaceclaim/")
        assert get(cluster, namespace, "workspaceclaim", name)["spec"]["owner"] == owner

    refused = _cli(operator, "claim", "--preset", "mail", "--owner", "bob", "-n", "no-such-ns")
    assert refused.returncode == 5  # not found (issue 18: stable exit codes)
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "no-such-ns" in refused.stderr


def _kubeconfig(cluster: LocalCluster, path: Path, namespace: str, **user: str) -> Path:
    """The cluster's kubeconfig with another user (and the context's namespace)."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    entry = dict(config["clusters"][0]["cluster"])
    for key in ("certificate-authority", "client-certificate", "client-key"):
        if entry.get(key) and not Path(entry[key]).is_absolute():
            entry[key] = str(cluster.kubeconfig.parent / entry[key])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": entry}],
        "users": [{"name": "u", "user": user}],
        "contexts": [
            {"name": "x", "context": {"cluster": "c", "user": "u", "namespace": namespace}}
        ],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr.strip()


def test_issue18_forbidden_not_found_and_unreachable_are_one_line_with_their_exit_codes(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    # 403: a real identity without any RBAC rights. (kubectl's `as:` impersonation
    # in a kubeconfig is not supported by the Python client, so a token of a
    # service account that no binding names.)
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    nobody = _kubeconfig(cluster, tmp_path / "nobody", namespace, token=token)
    forbidden = _cli(operator, "status", "--kubeconfig", str(nobody))
    assert forbidden.returncode == 4, forbidden.stderr
    line = _one_line(forbidden)
    assert line.startswith("prewarm status: forbidden (403): ")
    assert f"system:serviceaccount:{namespace}:nobody" in line
    # -n defaulted to the context's namespace
    assert f'in the namespace "{namespace}"' in line

    missing = _cli(operator, "reset", "no-such-preset", "-n", namespace)
    assert missing.returncode == 5, missing.stderr
    assert "prewarm reset: not found: " in _one_line(missing)
    assert "no-such-preset" in missing.stderr

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = yaml.safe_load(nobody.read_text())
    dead["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    (tmp_path / "dead").write_text(yaml.safe_dump(dead))
    for argv in (["status"], ["claim", "--preset", "p", "--owner", "o", "--wait"]):
        unreachable = _cli(operator, *argv, "--kubeconfig", str(tmp_path / "dead"))
        assert unreachable.returncode == 3, unreachable.stderr
        assert "cannot reach the API server" in _one_line(unreachable)


def test_issue18_read_commands_answer_json_yaml_and_wide(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    _warm_pool(cluster, namespace, "out", 1)
    as_json = _cli(operator, "status", "-n", namespace, "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    (preset,) = document["presets"]
    assert (preset["name"], preset["ready"]) == ("out", 1)
    assert "recentClaims" in document
    as_yaml = _cli(operator, "status", "-n", namespace, "-o", "yaml")
    assert yaml.safe_load(as_yaml.stdout)["presets"][0]["templateHash"] == preset["templateHash"]
    wide = _cli(operator, "status", "-n", namespace, "-o", "wide")
    assert "TEMPLATE" in wide.stdout.splitlines()[0]
    assert preset["templateHash"] in wide.stdout
    history = _cli(operator, "history", "out", "-n", namespace, "-o", "json")
    assert history.returncode == 0, history.stderr
    assert {b["state"] for b in json.loads(history.stdout)["builds"]} == {"succeeded"}
    for result in (as_json, as_yaml, wide, history):
        assert "\x1b" not in result.stdout  # not a terminal: no colours


def _claim_name(stdout: str) -> str:
    return stdout.split()[0].removeprefix("workspaceclaim/")


def test_issue16_claim_parameters_reach_the_agent_inputs_warm_and_cold(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    """`prewarm claim --param` binds; the parameters (defaults filled in) are on
    the workspace and, with owner and generation, on the pod the agent reads;
    a cold start gets them too; parameters that do not fit fail the claim,
    naming the parameter, without taking the warm workspace."""
    manifest = preset_manifest("params", 1)
    manifest["spec"]["claimParameters"] = [
        {"name": "branch", "pattern": "[a-z][a-z0-9/-]*", "default": "main"},
        {"name": "cpus", "type": "int", "enum": ["1", "2", "4"]},
    ]
    apply(cluster, namespace, manifest)
    wait_until(
        lambda: (get(cluster, namespace, "preset", "params").get("status") or {}).get("ready") == 1,
        what="1 warm",
    )

    def inputs(claim: str) -> tuple[dict[str, Any], dict[str, str], list[dict[str, str]]]:
        status = get(cluster, namespace, "workspaceclaim", claim)["status"]
        ws = get(cluster, namespace, "prebuiltworkspace", status["workspaceName"])
        pod = get(cluster, namespace, "pod", status["workspaceName"])
        return status, pod["metadata"]["annotations"], ws["spec"].get("claimParameters", [])

    # Bad parameters first: the warm workspace stays in the pool.
    bad = _cli(operator, "claim", "--preset", "params", "--owner", "ann", "-n", namespace,
               "--param", "cpus=3", "--param", "colour=red",
               "--wait", "--timeout", "60")  # fmt: skip
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Failed" in bad.stdout
    failed = get(cluster, namespace, "workspaceclaim", _claim_name(bad.stdout))["status"]
    bound = next(c for c in failed["conditions"] if c["type"] == "Bound")
    assert bound["reason"] == "InvalidParameters"
    assert "spec.parameters[cpus]" in bound["message"]
    assert "spec.parameters[colour]" in bound["message"]
    assert "workspaceName" not in failed
    assert events(cluster, namespace, _claim_name(bad.stdout), "ClaimFailed")

    warm = _cli(operator, "claim", "--preset", "params", "--owner", "ann", "-n", namespace,
                "--param", "branch=feature/x", "--param", "cpus=2", "--lifetime", "8h",
                "--wait", "--timeout", "60")  # fmt: skip
    assert warm.returncode == 0, warm.stdout + warm.stderr
    assert "(prebuilt)" in warm.stdout  # the bad claim did not take it
    status, annotations, recorded = inputs(_claim_name(warm.stdout))
    assert json.loads(annotations["prewarm.dev/claim-parameters"]) == {
        "branch": "feature/x",
        "cpus": "2",
    }
    assert annotations["prewarm.dev/owner"] == "ann"
    assert annotations["prewarm.dev/reinit-generation"] == str(status["reinitGeneration"])
    assert recorded == [{"name": "branch", "value": "feature/x"}, {"name": "cpus", "value": "2"}]
    assert status["expiresAt"]  # --lifetime reached the claim

    cold = _cli(operator, "claim", "--preset", "params", "--owner", "bob", "-n", namespace,
                "--param", "cpus=4", "--fresh", "--on-workspace-lost", "Fail",
                "--cold-start-grace", "0s", "--wait", "--timeout", "60")  # fmt: skip
    assert cold.returncode == 0, cold.stdout + cold.stderr
    assert "(cold)" in cold.stdout
    _, annotations, recorded = inputs(_claim_name(cold.stdout))
    # The preset's default fills in what the claim left out.
    assert json.loads(annotations["prewarm.dev/claim-parameters"]) == {
        "branch": "main",
        "cpus": "4",
    }
    assert annotations["prewarm.dev/reinit-generation"] == "1"
    assert recorded == [{"name": "branch", "value": "main"}, {"name": "cpus", "value": "4"}]
    spec = get(cluster, namespace, "workspaceclaim", _claim_name(cold.stdout))["spec"]
    assert (spec["fresh"], spec["onWorkspaceLost"], spec["coldStartGrace"]) == (True, "Fail", "0s")
