"""The `prewarm` CLI against the real cluster and ledger."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "no-such-ns" in refused.stderr
