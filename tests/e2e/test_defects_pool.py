"""Defects users met in the pool and claims (issue 12, items 1, 2, 3 and 5),
each on the real API server + kwok + PostgreSQL with the operator as a process."""

from __future__ import annotations

import signal
import time
from typing import Any

import psycopg
from tests.e2e.support import apply, create_all, events, get, items, preset_manifest, wait_until

from prewarm.commands.claim import claim_manifest
from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess

FAIL = {"sim.prewarm.dev/behavior": "fail"}


def _status(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, ns, "preset", name).get("status") or {})


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def _workspaces(cluster: LocalCluster, ns: str, preset: str) -> list[Any]:
    return items(cluster, ns, "prebuiltworkspaces", f"prewarm.dev/preset={preset}")


def _ready_unclaimed(cluster: LocalCluster, ns: str, preset: str) -> int:
    return sum(
        1
        for w in _workspaces(cluster, ns, preset)
        if (w.get("status") or {}).get("phase") == "Ready"
        and not w["spec"].get("owner")
        and not w["metadata"].get("deletionTimestamp")
    )


def _claims_bound(cluster: LocalCluster, ns: str) -> list[Any]:
    return [
        c
        for c in items(cluster, ns, "workspaceclaims")
        if (c.get("status") or {}).get("phase") == "Bound"
    ]


def test_claim_storm_claimed_workspaces_do_not_stall_the_pool(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    """Item 1, deterministic form: status-less claimed workspaces (what a storm
    of cold starts leaves while the watch lags) ate the pool's create budget,
    so scaling 2 -> 6 stayed at 2."""
    apply(cluster, namespace, preset_manifest("pool", 2))
    wait_until(lambda: _ready_unclaimed(cluster, namespace, "pool") == 2, what="2 warm")
    thash = _status(cluster, namespace, "pool")["templateHash"]
    # Their claims exist (the operator trusts only workspaces their claim
    # controls), but wait for another preset, so nothing else happens to them.
    create_all(
        cluster,
        namespace,
        [claim_manifest(f"held-{i:02d}", "elsewhere", f"user{i}") for i in range(20)],
    )
    claim_uids = {
        c["metadata"]["name"]: c["metadata"]["uid"]
        for c in items(cluster, namespace, "workspaceclaims")
    }
    planted = [
        {
            "apiVersion": "prewarm.dev/v1alpha1",
            "kind": "PrebuiltWorkspace",
            "metadata": {
                "name": f"held-{i:02d}",
                "labels": {"prewarm.dev/preset": "pool", "prewarm.dev/template-hash": thash},
                "ownerReferences": [
                    {
                        "apiVersion": "prewarm.dev/v1alpha1",
                        "kind": "WorkspaceClaim",
                        "name": f"held-{i:02d}",
                        "uid": claim_uids[f"held-{i:02d}"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "presetRef": {"name": "pool"},
                "templateHash": thash,
                "owner": f"user{i}",
                "claimRef": {"name": f"held-{i:02d}", "uid": claim_uids[f"held-{i:02d}"]},
            },
        }
        for i in range(20)
    ]
    create_all(cluster, namespace, planted)
    cluster.kubectl(
        "patch",
        "-n",
        namespace,
        "preset/pool",
        "--type=merge",
        "-p",
        '{"spec":{"prebuilds":{"instances":6}}}',
    )
    wait_until(
        lambda: _ready_unclaimed(cluster, namespace, "pool") == 6,
        timeout=60,
        what="the pool refilled to 6 beside 20 claimed workspaces",
    )


def test_claim_storm_builds_at_most_one_workspace_per_claim(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    """Item 1: during a storm a pending claim whose cold workspace was not in
    the watch yet built a second one. Every claim must own exactly one."""
    apply(cluster, namespace, preset_manifest("storm", 10))
    wait_until(lambda: _ready_unclaimed(cluster, namespace, "storm") == 10, what="10 warm")
    claims = [claim_manifest(f"s{i:03d}", "storm", f"user{i}") for i in range(120)]
    create_all(cluster, namespace, claims)
    bound = wait_until(
        lambda: (b := _claims_bound(cluster, namespace)) and len(b) == 120 and b,
        timeout=240,
        what="120 bound claims",
    )
    owned: dict[str, list[str]] = {}
    for w in _workspaces(cluster, namespace, "storm"):
        ref = w["spec"].get("claimRef")
        if ref:
            owned.setdefault(ref["name"], []).append(w["metadata"]["name"])
    doubles = {claim: names for claim, names in owned.items() if len(names) > 1}
    assert not doubles, f"claims with more than one workspace: {doubles}"
    assert sorted(owned) == sorted(c["metadata"]["name"] for c in bound)
    for c in bound:
        assert owned[c["metadata"]["name"]] == [c["status"]["workspaceName"]]
    wait_until(
        lambda: _status(cluster, namespace, "storm").get("claimed") == 120,
        what="the preset counts 120 claimed",
    )
    wait_until(
        lambda: _ready_unclaimed(cluster, namespace, "storm") == 10,
        timeout=120,
        what="the pool refilled after the storm",
    )


def _quota(name: str, pods: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": name},
        "spec": {"hard": {"pods": str(pods)}},
    }


def test_full_quota_backs_off_says_which_quota_and_claims_still_bind(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    """Item 2: a 403 "exceeded quota" made a valid preset ValidationFailed and
    failed every claim although Ready workspaces waited."""
    apply(cluster, namespace, _quota("two-pods", 2))
    wait_until(
        lambda: get(cluster, namespace, "resourcequota", "two-pods").get("status", {}).get("hard"),
        what="the quota is in force",
    )
    apply(cluster, namespace, preset_manifest("capped", 4))
    wait_until(
        lambda: (
            _condition(_status(cluster, namespace, "capped"), "QuotaExceeded").get("status")
            == "True"
        ),
        what="QuotaExceeded condition",
    )
    wait_until(lambda: _ready_unclaimed(cluster, namespace, "capped") == 2, what="2 warm")
    status = _status(cluster, namespace, "capped")
    assert status["prebuildStatus"] == "Normal"
    assert not status.get("lastFailure"), "a full quota is no build failure"
    assert _condition(status, "ValidationFailed")["status"] == "False"
    assert "two-pods" in _condition(status, "QuotaExceeded")["message"]
    assert not events(cluster, namespace, "capped", "ValidationFailed")

    apply(cluster, namespace, claim_manifest("alice-claim", "capped", "alice"))
    wait_until(
        lambda: (
            get(cluster, namespace, "workspaceclaim", "alice-claim").get("status", {}).get("phase")
            == "Bound"
        ),
        what="the claim binds a Ready workspace",
    )
    claim = get(cluster, namespace, "workspaceclaim", "alice-claim")["status"]
    assert claim["source"] == "prebuilt"

    # Room in the quota: the held workspaces get their pods, the pool fills.
    apply(cluster, namespace, _quota("two-pods", 10))
    wait_until(
        lambda: _ready_unclaimed(cluster, namespace, "capped") == 4,
        timeout=120,
        what="the pool filled once the quota had room",
    )
    wait_until(
        lambda: (
            _condition(_status(cluster, namespace, "capped"), "QuotaExceeded").get("status")
            == "False"
        ),
        what="QuotaExceeded lifted",
    )
    assert not _status(cluster, namespace, "capped").get("lastFailure")


def test_full_quota_cold_start_waits_then_binds(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, _quota("no-pods", 0))
    wait_until(
        lambda: get(cluster, namespace, "resourcequota", "no-pods").get("status", {}).get("hard"),
        what="the quota is in force",
    )
    apply(cluster, namespace, preset_manifest("cold", 0))
    apply(cluster, namespace, claim_manifest("bob-claim", "cold", "bob"))

    def claim_status() -> dict[str, Any]:
        return dict(get(cluster, namespace, "workspaceclaim", "bob-claim").get("status") or {})

    wait_until(
        lambda: _condition(claim_status(), "Bound").get("reason") == "QuotaExceeded",
        what="the claim waits for the quota",
    )
    assert claim_status()["phase"] == "Pending"
    apply(cluster, namespace, _quota("no-pods", 5))
    wait_until(lambda: claim_status().get("phase") == "Bound", timeout=90, what="bound")
    assert claim_status()["source"] == "cold"
    assert len(_workspaces(cluster, namespace, "cold")) == 1


def _builds(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT workspace_uid, started_at, failed_at, failure_reason, failure_message,"
            " validation_error FROM builds ORDER BY workspace_uid"
        ).fetchall()


def _column(dsn: str, name: str) -> str | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT status::text FROM presets WHERE name = %s", (name,)).fetchone()
    return str(row[0]) if row else None


def test_restart_keeps_the_recorded_failure_history(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess, ledger_dsn: str
) -> None:
    """Item 3: every restart re-recorded each failed workspace with the message
    "replayed from the workspace's status" and its creation time."""
    apply(cluster, namespace, preset_manifest("broken", 3, labels=FAIL))
    wait_until(
        lambda: _status(cluster, namespace, "broken").get("prebuildStatus") == "HardLimited",
        what="HardLimited",
    )
    wait_until(
        lambda: len(_builds(ledger_dsn)) == 3 and all(b[2] for b in _builds(ledger_dsn)),
        what="three failures in the ledger",
    )
    before = _builds(ledger_dsn)
    last_failure = _status(cluster, namespace, "broken")["lastFailure"]
    limited = _condition(_status(cluster, namespace, "broken"), "HardLimited")["message"]

    operator.restart(signal.SIGKILL)
    time.sleep(5)  # the replay and several passes
    assert _builds(ledger_dsn) == before
    assert not any("replayed" in (b[4] or "") for b in _builds(ledger_dsn))
    assert _status(cluster, namespace, "broken")["lastFailure"] == last_failure
    assert _condition(_status(cluster, namespace, "broken"), "HardLimited")["message"] == limited


def test_prebuild_status_column_follows_the_preset(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess, ledger_dsn: str
) -> None:
    """Item 5: the ledger's presets.status stayed 'normal' whatever happened."""
    # Paused at first, so the test sees 'normal' before the failures arrive.
    paused = preset_manifest("moody", 3, labels=FAIL)
    paused["metadata"]["annotations"] = {"prewarm.dev/paused": "true"}
    apply(cluster, namespace, paused)
    wait_until(lambda: _column(ledger_dsn, "moody") == "normal", what="normal at first")
    cluster.kubectl("annotate", "-n", namespace, "preset/moody", "prewarm.dev/paused-")
    wait_until(lambda: _column(ledger_dsn, "moody") == "hard_limited", what="hard_limited")
    cluster.kubectl("annotate", "-n", namespace, "preset/moody", "prewarm.dev/paused=true")
    cluster.kubectl("annotate", "-n", namespace, "preset/moody", "prewarm.dev/retry=one")
    wait_until(lambda: _column(ledger_dsn, "moody") == "normal", what="normal after the retry")
    bad = [{"name": "Not_A_DNS_Label", "image": "busybox"}]
    apply(cluster, namespace, preset_manifest("moody", 3, containers=bad))
    wait_until(
        lambda: _column(ledger_dsn, "moody") == "validation_failed", what="validation_failed"
    )
    assert _status(cluster, namespace, "moody")["prebuildStatus"] == "ValidationFailed"
