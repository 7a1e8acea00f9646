"""Security on the real API server: restricted pods, credentials kept to their place."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import psycopg
from tests.e2e.support import apply, events, get, items, preset_manifest, wait_until

from prewarm.commands.claim import claim_manifest
from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess


def _status(cluster: LocalCluster, ns: str, kind: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, ns, kind, name).get("status") or {})


def test_claim_credentials_reach_only_the_workspace_agent(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    planted = f"s3cr3t-{uuid.uuid4().hex}"
    preset = preset_manifest("agented", 1)
    preset["spec"]["agent"] = {"onClaim": ["/bin/sh", "-c", "echo hello $PREWARM_OWNER"]}
    apply(cluster, namespace, preset)
    wait_until(
        lambda: _status(cluster, namespace, "preset", "agented").get("ready") == 1, what="warm"
    )
    (ws,) = items(cluster, namespace, "prebuiltworkspaces")
    name = ws["metadata"]["name"]
    pod = get(cluster, namespace, "pod", name)
    # The hook runs in the workspace container (exec), which reports under its name.
    assert pod["metadata"]["annotations"]["prewarm.dev/agents"] == "workspace"
    assert pod["spec"]["serviceAccountName"] == f"{name}-agent"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert [c["name"] for c in pod["spec"]["containers"]][-1] == "prewarm-agent"
    for kind in ("serviceaccount", "role", "rolebinding"):
        owners = get(cluster, namespace, kind, f"{name}-agent")["metadata"]["ownerReferences"]
        assert owners[0]["uid"] == ws["metadata"]["uid"]

    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "rita-creds",
        "-n",
        namespace,
        f"--from-literal=token={planted}",
    )
    apply(cluster, namespace, claim_manifest("rita", "agented", "rita", "rita-creds"))
    wait_until(
        lambda: _status(cluster, namespace, "workspaceclaim", "rita").get("phase") == "Bound",
        what="bound",
    )
    # A claim binds first; the take, the credentials and the pod's annotations follow.
    wait_until(
        lambda: (get(cluster, namespace, "pod", name)["metadata"].get("annotations") or {}).get(
            "prewarm.dev/owner"
        ),
        what="the pod's annotations",
    )
    owner_secret = get(cluster, namespace, "secret", f"{name}-owner")
    assert base64.b64decode(owner_secret["data"]["token"]).decode() == planted
    generation = _status(cluster, namespace, "workspaceclaim", "rita")["reinitGeneration"]
    annotations = get(cluster, namespace, "pod", name)["metadata"]["annotations"]
    assert annotations["prewarm.dev/owner"] == "rita"
    assert annotations["prewarm.dev/reinit-generation"] == str(generation)

    # The agent reports the generation done (as prewarm agent does): the claim says so.
    cluster.kubectl(
        "annotate",
        "-n",
        namespace,
        f"pod/{name}",
        f"prewarm.dev/reinit-done.workspace={generation}",
    )
    wait_until(
        lambda: _status(cluster, namespace, "workspaceclaim", "rita").get("reinitializedAt"),
        what="reinitializedAt",
    )

    # The credential appears nowhere it must not: annotations, labels, status,
    # Events, the operator's log, the ledger.
    encoded = base64.b64encode(planted.encode()).decode()
    exposed = json.dumps(
        [
            [p["metadata"].get("annotations"), p["metadata"].get("labels")]
            for p in items(cluster, namespace, "pods")
        ]
        + [w for w in items(cluster, namespace, "prebuiltworkspaces")]
        + [c for c in items(cluster, namespace, "workspaceclaims")]
        + [p for p in items(cluster, namespace, "presets")]
        + [e for e in items(cluster, namespace, "events")]
    )
    with psycopg.connect(operator.dsn) as conn:
        ledger = json.dumps(
            [
                conn.execute(f"select * from {table}").fetchall()
                for table in ("presets", "builds", "claims", "hard_limit_notifications")
            ],
            default=str,
        )
    for haystack, where in (
        (exposed, "Kubernetes objects"),
        (operator.log_text(), "the operator log"),
        (ledger, "the ledger"),
    ):
        assert planted not in haystack, f"credential found in {where}"
        assert encoded not in haystack, f"encoded credential found in {where}"
    assert not events(cluster, namespace, "rita", "ClaimFailed")


def test_workspace_pods_meet_the_restricted_pod_security_standard(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    apply(cluster, namespace, preset_manifest("safe", 1))
    wait_until(
        lambda: _status(cluster, namespace, "preset", "safe").get("ready") == 1,
        what="restricted pod admitted",
    )
    pod = items(cluster, namespace, "pods", "prewarm.dev/preset=safe")[0]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"] == ["ALL"]

    privileged = preset_manifest(
        "wild",
        1,
        containers=[{"name": "ws", "image": "busybox", "securityContext": {"privileged": True}}],
    )
    privileged["spec"]["podSecurity"] = "Template"
    apply(cluster, namespace, privileged)
    wait_until(
        lambda: (
            _status(cluster, namespace, "preset", "wild").get("prebuildStatus")
            == "ValidationFailed"
        ),
        what="ValidationFailed by PodSecurity admission",
    )
    conditions = {c["type"]: c for c in _status(cluster, namespace, "preset", "wild")["conditions"]}
    assert "restricted" in conditions["ValidationFailed"]["message"]
