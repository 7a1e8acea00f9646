"""Claims racing the pool's own deletes (issue 16): a scale-down, a TTL expiry,
a preset deletion. The claimed workspace is never deleted (a claim that lost
its workspace would say so: status.rebinds, a WorkspaceLost condition), and
the loser of every race moves on: the pool's conditional delete fails and it
deletes another, a claim whose take fails tries the next candidate or builds.
"""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.support import apply, items, preset_manifest, wait_until

from prewarm.commands.claim import claim_manifest
from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess

CLAIMS = 12


def _workspaces(cluster: LocalCluster, ns: str, preset: str) -> dict[str, Any]:
    found = items(cluster, ns, "prebuiltworkspaces", f"prewarm.dev/preset={preset}")
    return {w["metadata"]["name"]: w for w in found}


def _ready(cluster: LocalCluster, ns: str, preset: str) -> int:
    return sum(
        1
        for w in _workspaces(cluster, ns, preset).values()
        if (w.get("status") or {}).get("phase") == "Ready" and not w["spec"].get("owner")
    )


def _claims_at_once(cluster: LocalCluster, ns: str, prefix: str, preset: str) -> None:
    claims = [claim_manifest(f"{prefix}{i:02d}", preset, f"user{i}") for i in range(CLAIMS)]
    body = {"apiVersion": "v1", "kind": "List", "items": claims}
    cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(body))


def _settled(cluster: LocalCluster, ns: str, prefix: str) -> list[Any]:
    """Every claim of the race once none is still without an answer."""
    claims = [
        c for c in items(cluster, ns, "workspaceclaims") if c["metadata"]["name"].startswith(prefix)
    ]
    return claims if all(_answered(c) for c in claims) and len(claims) == CLAIMS else []


def _answered(claim: dict[str, Any]) -> bool:
    status = claim.get("status") or {}
    if status.get("phase") == "Bound":
        return True
    bound = next((c for c in status.get("conditions", []) if c["type"] == "Bound"), {})
    return bound.get("reason") == "PresetNotFound"


def _assert_bound_ones_kept(
    cluster: LocalCluster, ns: str, preset: str, claims: list[Any]
) -> list[str]:
    """Each Bound claim still has the one workspace it took, alive and its own."""
    workspaces = _workspaces(cluster, ns, preset)
    bound = [c for c in claims if c["status"]["phase"] == "Bound"]
    names = [c["status"]["workspaceName"] for c in bound]
    assert len(set(names)) == len(names), "a workspace was bound twice"
    for claim in bound:
        assert claim["status"].get("rebinds", 0) == 0, f"{claim['metadata']['name']} lost one"
        ws = workspaces[claim["status"]["workspaceName"]]
        assert not ws["metadata"].get("deletionTimestamp")
        assert [o["uid"] for o in ws["metadata"]["ownerReferences"]] == [claim["metadata"]["uid"]]
    return names


def test_claims_racing_a_scale_down_keep_what_they_took(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, preset_manifest("shrink", CLAIMS))
    wait_until(lambda: _ready(cluster, namespace, "shrink") == CLAIMS, what="warm pool")
    _claims_at_once(cluster, namespace, "s", "shrink")
    cluster.kubectl("scale", "-n", namespace, "preset/shrink", "--replicas=0")

    claims = wait_until(lambda: _settled(cluster, namespace, "s"), what="every claim bound")
    assert all(c["status"]["phase"] == "Bound" for c in claims)
    bound = _assert_bound_ones_kept(cluster, namespace, "shrink", claims)
    # The pool's losers moved on: it ends with no unclaimed workspace.
    wait_until(
        lambda: set(_workspaces(cluster, namespace, "shrink")) == set(bound),
        what="only the claimed workspaces left",
    )


def test_claims_racing_ttl_expiry_keep_what_they_took(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    # A 1 s TTL: the pool expires and replaces its Ready workspaces all the
    # time, so the claims' takes meet its conditional deletes.
    apply(cluster, namespace, preset_manifest("churn", CLAIMS, ttl="1s"))
    wait_until(lambda: _ready(cluster, namespace, "churn") >= CLAIMS // 2, what="warm pool")
    _claims_at_once(cluster, namespace, "t", "churn")

    claims = wait_until(lambda: _settled(cluster, namespace, "t"), what="every claim bound")
    assert all(c["status"]["phase"] == "Bound" for c in claims)
    _assert_bound_ones_kept(cluster, namespace, "churn", claims)


def test_claims_racing_a_preset_deletion_keep_what_they_took_and_the_rest_wait(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, preset_manifest("doomed", CLAIMS))
    wait_until(lambda: _ready(cluster, namespace, "doomed") == CLAIMS, what="warm pool")
    _claims_at_once(cluster, namespace, "d", "doomed")
    cluster.kubectl("delete", "-n", namespace, "preset/doomed", "--wait=false")

    claims = wait_until(lambda: _settled(cluster, namespace, "d"), what="every claim answered")
    # The garbage collector takes the pool; the claimed ones are not the preset's.
    wait_until(
        lambda: all(
            w["spec"].get("owner") for w in _workspaces(cluster, namespace, "doomed").values()
        ),
        what="the pool's unclaimed workspaces collected",
    )
    claims = _settled(cluster, namespace, "d")
    _assert_bound_ones_kept(cluster, namespace, "doomed", claims)
    # Whoever lost the race to the deletion waits for the preset (and fails
    # after PREWARM_CLAIM_WAIT_LIMIT): it never built on a preset being deleted.
    for claim in claims:
        if claim["status"]["phase"] != "Bound":
            assert claim["status"].get("source") is None
