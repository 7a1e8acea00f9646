"""After Bound, on the real API server (issue 16): a lost workspace, a lifetime,
a fresh build, the grace before a cold start."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from tests.e2e.support import apply, events, get, items, preset_manifest, wait_until

from prewarm.commands.claim import claim_manifest
from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess


def _status(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, ns, "workspaceclaim", name).get("status") or {})


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def _workspaces(cluster: LocalCluster, ns: str, preset: str) -> dict[str, Any]:
    found = items(cluster, ns, "prebuiltworkspaces", f"prewarm.dev/preset={preset}")
    return {w["metadata"]["name"]: w for w in found}


def _ready(cluster: LocalCluster, ns: str, preset: str) -> list[str]:
    return sorted(
        name
        for name, w in _workspaces(cluster, ns, preset).items()
        if (w.get("status") or {}).get("phase") == "Ready" and not w["spec"].get("owner")
    )


def _claim(name: str, preset: str, owner: str, **spec: Any) -> dict[str, Any]:
    manifest = claim_manifest(name, preset, owner)
    manifest["spec"].update(spec)
    return manifest


def _bound(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return wait_until(
        lambda: (s := _status(cluster, ns, name)).get("phase") == "Bound" and s,
        what=f"{name} Bound",
    )


def _rebound(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    """The claim Bound again after one lost workspace."""
    return wait_until(
        lambda: (
            (s := _status(cluster, ns, name)).get("phase") == "Bound"
            and s.get("rebinds") == 1
            and s
        ),
        what=f"{name} rebound",
    )


def test_a_lost_pod_rebinds_the_claim_to_another_workspace_for_the_same_owner(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, preset_manifest("lose", 2))
    wait_until(lambda: len(_ready(cluster, namespace, "lose")) == 2, what="2 warm")
    apply(cluster, namespace, _claim("rebind", "lose", "alice"))
    first = _bound(cluster, namespace, "rebind")["workspaceName"]

    cluster.kubectl("delete", "-n", namespace, "pod", first, "--wait=false")

    status = _rebound(cluster, namespace, "rebind")
    second = status["workspaceName"]
    assert second != first
    lost = _condition(status, "WorkspaceLost")
    assert (lost["status"], lost["reason"]) == ("False", "Rebound")
    assert first in lost["message"]
    assert events(cluster, namespace, "rebind", "WorkspaceLost")
    # The new workspace is the owner's, its pod knows it (the take and the
    # annotations follow Bound); the lost one is gone.
    ws = wait_until(
        lambda: (
            (w := get(cluster, namespace, "prebuiltworkspace", second))["spec"].get("owner") and w
        ),
        what="the take",
    )
    assert ws["spec"]["owner"] == "alice"
    owner = wait_until(
        lambda: (get(cluster, namespace, "pod", second)["metadata"].get("annotations") or {}).get(
            "prewarm.dev/owner"
        ),
        what="the pod's annotations",
    )
    assert owner == "alice"
    wait_until(
        lambda: first not in _workspaces(cluster, namespace, "lose"), what="lost one deleted"
    )
    with psycopg.connect(operator.dsn) as conn:
        claim_uid = get(cluster, namespace, "workspaceclaim", "rebind")["metadata"]["uid"]
        row = conn.execute(
            "select workspace_name, state, rebound_at is not null from claims where claim_uid = %s",
            (claim_uid,),
        ).fetchone()
        losses = conn.execute(
            "select workspace_name, reason, policy from claim_workspace_losses "
            "where claim_uid = %s",
            (claim_uid,),
        ).fetchall()
    assert row == (second, "bound", True)
    assert losses == [(first, "PodDeleted", "Rebind")]


def test_a_deleted_workspace_fails_a_claim_whose_policy_says_fail(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, preset_manifest("fragile", 1))
    wait_until(lambda: len(_ready(cluster, namespace, "fragile")) == 1, what="1 warm")
    apply(cluster, namespace, _claim("strict", "fragile", "bob", onWorkspaceLost="Fail"))
    workspace = _bound(cluster, namespace, "strict")["workspaceName"]

    cluster.kubectl("delete", "-n", namespace, "prebuiltworkspace", workspace, "--wait=false")

    status = wait_until(
        lambda: (s := _status(cluster, namespace, "strict")).get("phase") == "Failed" and s,
        what="failed",
    )
    assert _condition(status, "Bound")["reason"] == "WorkspaceLost"
    lost = _condition(status, "WorkspaceLost")
    assert (lost["status"], lost["reason"]) == ("True", "WorkspaceDeleted")
    assert events(cluster, namespace, "strict", "WorkspaceLost")
    assert events(cluster, namespace, "strict", "ClaimFailed")


def test_a_claim_lifetime_ends_the_workspace_and_the_claim_says_expired(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, preset_manifest("brief", 1))
    wait_until(lambda: len(_ready(cluster, namespace, "brief")) == 1, what="1 warm")
    apply(cluster, namespace, _claim("short", "brief", "carol", lifetime="3s"))
    bound = _bound(cluster, namespace, "short")
    workspace = bound["workspaceName"]
    assert bound["expiresAt"]

    status = wait_until(
        lambda: (s := _status(cluster, namespace, "short")).get("phase") == "Expired" and s,
        what="expired",
    )
    assert _condition(status, "Bound")["reason"] == "Expired"
    assert "spec.lifetime 3s" in _condition(status, "Bound")["message"]
    wait_until(
        lambda: workspace not in _workspaces(cluster, namespace, "brief"), what="workspace gone"
    )
    assert events(cluster, namespace, "short", "Expired")
    with psycopg.connect(operator.dsn) as conn:
        uid = get(cluster, namespace, "workspaceclaim", "short")["metadata"]["uid"]
        row = conn.execute(
            "select state, expired_at is not null from claims where claim_uid = %s", (uid,)
        ).fetchone()
    assert row == ("expired", True)


def test_a_fresh_claim_builds_although_warm_ones_are_ready(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, preset_manifest("clean", 1))
    warm = wait_until(lambda: _ready(cluster, namespace, "clean"), what="1 warm")
    apply(cluster, namespace, _claim("fresh", "clean", "dave", fresh=True))
    status = _bound(cluster, namespace, "fresh")
    assert status["source"] == "cold"
    assert status["workspaceName"] not in warm
    assert _ready(cluster, namespace, "clean") == warm  # the warm one is still unclaimed


def _slow_preset(name: str, delay: str, **claims: str) -> dict[str, Any]:
    preset = preset_manifest(name, 1)
    preset["spec"]["template"]["metadata"]["annotations"] = {
        "sim.prewarm.dev/ready-delay-ms": delay
    }
    if claims:
        preset["spec"]["claims"] = claims
    return preset


def _starting(cluster: LocalCluster, ns: str, preset: str) -> list[str]:
    return sorted(
        name
        for name, w in _workspaces(cluster, ns, preset).items()
        if (w.get("status") or {}).get("phase", "Pending") in ("Pending", "Building")
        and not w["spec"].get("owner")
    )


def test_grace_a_warm_workspace_ready_within_it_is_taken(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, _slow_preset("patient", "4s", coldStartGrace="2m"))
    coming = wait_until(lambda: _starting(cluster, namespace, "patient"), what="one starting")
    apply(cluster, namespace, _claim("waits", "patient", "erin"))
    status = _bound(cluster, namespace, "waits")
    assert (status["source"], status["workspaceName"]) == ("prebuilt", coming[0])
    assert not events(cluster, namespace, "waits", "ColdStart")


def test_grace_with_none_ready_in_time_the_claim_cold_starts_after_it(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    # The pool's workspace will not be Ready for an hour; the claim's override
    # (2s) is shorter than the preset's grace, then it builds its own.
    apply(cluster, namespace, _slow_preset("sluggish", "1h", coldStartGrace="10m"))
    coming = wait_until(lambda: _starting(cluster, namespace, "sluggish"), what="one starting")
    apply(cluster, namespace, _claim("impatient", "sluggish", "frank", coldStartGrace="2s"))
    status = wait_until(
        lambda: (s := _status(cluster, namespace, "impatient")).get("source") == "cold" and s,
        what="cold start",
    )
    assert status["workspaceName"] not in coming
    assert _condition(status, "Bound")["reason"] == "ColdStart"
    assert _starting(cluster, namespace, "sluggish") == coming  # still the pool's, unclaimed


def _bound_before_its_take(
    cluster: LocalCluster, ns: str, claim: str, workspace: str
) -> dict[str, Any]:
    """The claim as an operator stopped between a claim's Bound and its take
    leaves it: Bound, naming a workspace whose spec does not name the claim."""
    status = {
        "phase": "Bound",
        "workspaceName": workspace,
        "source": "prebuilt",
        "boundAt": "2026-11-30T12:00:00.000Z",
        "reinitGeneration": 1,
    }
    cluster.kubectl(
        "patch", "workspaceclaim", claim, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    return status


def test_a_claim_bound_before_its_take_takes_it_on_the_next_operators_pass(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    """A claim binds first and takes right after (docs/decisions.md, "A claim
    binds first"). An operator stopped between the two: the next one finishes
    the take (the workspace becomes the claim's, its pod learns the owner),
    and a claim waiting at its start does not get that workspace first: it is
    the only warm one, so the rival builds its own."""
    apply(cluster, namespace, preset_manifest("half", 1))
    wait_until(lambda: len(_ready(cluster, namespace, "half")) == 1, what="1 warm")
    (name,) = _ready(cluster, namespace, "half")
    operator.stop()
    apply(cluster, namespace, _claim("halfway", "half", "heidi"))
    _bound_before_its_take(cluster, namespace, "halfway", name)
    apply(cluster, namespace, _claim("rival", "half", "rita"))
    operator.start()
    rival = _bound(cluster, namespace, "rival")
    assert (rival["workspaceName"], rival["source"]) != (name, "prebuilt")

    uid = get(cluster, namespace, "workspaceclaim", "halfway")["metadata"]["uid"]
    ws = wait_until(
        lambda: (
            (w := get(cluster, namespace, "prebuiltworkspace", name))["spec"].get("owner") and w
        ),
        what="the take finished",
    )
    assert ws["spec"]["claimRef"] == {"name": "halfway", "uid": uid}
    assert [o["uid"] for o in ws["metadata"]["ownerReferences"]] == [uid]
    annotations = wait_until(
        lambda: (
            (a := get(cluster, namespace, "pod", name)["metadata"].get("annotations") or {}).get(
                "prewarm.dev/owner"
            )
            and a
        ),
        what="the pod knows its owner",
    )
    assert annotations["prewarm.dev/reinit-generation"] == "1"
    status = _status(cluster, namespace, "halfway")
    assert (status["phase"], status["workspaceName"], status.get("rebinds", 0)) == (
        "Bound",
        name,
        0,
    )


def test_a_claim_bound_before_its_take_to_what_another_claim_took_binds_another_one(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    """Its workspace went to another claim before its take landed: the claim
    lost it (WorkspaceUnavailable) and binds another one; the other claim's
    workspace is not touched."""
    apply(cluster, namespace, preset_manifest("both", 2))
    wait_until(lambda: len(_ready(cluster, namespace, "both")) == 2, what="2 warm")
    apply(cluster, namespace, _claim("winner", "both", "wendy"))
    taken = _bound(cluster, namespace, "winner")["workspaceName"]
    wait_until(
        lambda: get(cluster, namespace, "prebuiltworkspace", taken)["spec"].get("owner"),
        what="the winner's take",
    )
    operator.stop()
    apply(cluster, namespace, _claim("late", "both", "larry"))
    _bound_before_its_take(cluster, namespace, "late", taken)
    operator.start()

    status = _rebound(cluster, namespace, "late")
    assert status["workspaceName"] != taken
    lost = _condition(status, "WorkspaceLost")
    assert lost["status"] == "False"
    (lost_event,) = events(cluster, namespace, "late", "WorkspaceLost")
    assert f"workspace {taken} went to another claim" in lost_event["message"]
    ws = get(cluster, namespace, "prebuiltworkspace", taken)
    assert ws["spec"]["owner"] == "wendy"
    assert not ws["metadata"].get("deletionTimestamp")
    pod = get(cluster, namespace, "pod", taken)
    assert pod["metadata"]["annotations"]["prewarm.dev/owner"] == "wendy"
