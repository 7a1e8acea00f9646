"""Who may claim what, on the real API server, as other users (impersonation).

The claim policy (a ValidatingAdmissionPolicy, its binding and the
claim-for-others ClusterRole) is installed from deploy/prewarm.yaml, the file a
kubectl user applies (rendered from the chart with its default values), never
from a copy. Every rejection names its rule; every allowed request works; a
planted PrebuiltWorkspace is never handed to a claimant.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.support import apply, get, items, preset_manifest, wait_until

from prewarm.commands.claim import claim_manifest
from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "prewarm.yaml"
POLICY = "prewarm-workspaceclaims"
CLAIM_FOR_OTHERS = "prewarm-claim-for-others"

OWNER_RULE = "prewarm.dev/claim-owner-is-requester"
SECRET_RULE = "prewarm.dev/claim-secret-readable-by-requester"

ALICE = ("alice", "team-a")
BOB = ("bob", "team-a")


def _shipped_policy() -> list[dict[str, Any]]:
    """The policy objects exactly as deploy/prewarm.yaml ships them."""
    docs = [d for d in yaml.safe_load_all(DEPLOY.read_text()) if d]
    wanted = [
        d
        for d in docs
        if d["kind"] in {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
        or (d["kind"] == "ClusterRole" and d["metadata"]["name"] == CLAIM_FOR_OTHERS)
    ]
    assert {d["kind"] for d in wanted} == {
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ClusterRole",
    }, "deploy/prewarm.yaml does not ship the claim policy: run `make deploy-manifests`"
    return wanted


@pytest.fixture(scope="module")
def claim_policy(cluster: LocalCluster) -> Iterator[None]:
    body = {"apiVersion": "v1", "kind": "List", "items": _shipped_policy()}
    probe_ns = f"authz-probe-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(probe_ns)
    _claimers(cluster, probe_ns, [_user("probe")])
    cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(body))
    try:
        # The CEL compiles against the CRD's schema without a warning.
        policy = wait_until(
            lambda: _type_checked(cluster), timeout=120, what="the policy type-checked"
        )
        assert not policy["status"].get("typeChecking", {}).get("expressionWarnings"), policy
        # The API server enforces a new policy once its informer has it.
        wait_until(
            lambda: OWNER_RULE in _probe(cluster, probe_ns),
            what="the API server enforcing the claim policy",
        )
        yield
    finally:
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", input=json.dumps(body))
        cluster.kubectl("delete", "namespace", probe_ns, "--wait=false")


def _type_checked(cluster: LocalCluster) -> dict[str, Any] | None:
    out = cluster.kubectl("get", "validatingadmissionpolicy", POLICY, "-o", "json").stdout
    policy: dict[str, Any] = json.loads(out)
    done = policy.get("status", {}).get("observedGeneration") == policy["metadata"]["generation"]
    return policy if done else None


def _probe(cluster: LocalCluster, namespace: str) -> str:
    """A dry-run claim by a user who may create claims, for someone else: its error."""
    result = _as(
        cluster,
        ("probe", ""),
        namespace,
        "create",
        "--dry-run=server",
        "-f",
        "-",
        input=json.dumps(claim_manifest("probe", "p", "someone-else")),
    )
    return result.stderr


def _user(name: str) -> dict[str, str]:
    return {"kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"}


def _claimers(cluster: LocalCluster, namespace: str, subjects: list[dict[str, str]]) -> None:
    """`subjects` may create, read and edit claims in `namespace` (nothing more)."""
    rbac = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "claimers"},
            "rules": [
                {
                    "apiGroups": ["prewarm.dev"],
                    "resources": ["workspaceclaims"],
                    "verbs": ["create", "get", "list", "watch", "update", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "claimers"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "claimers",
            },
            "subjects": subjects,
        },
    ]
    body = {"apiVersion": "v1", "kind": "List", "items": rbac}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def _as(
    cluster: LocalCluster, who: tuple[str, str], namespace: str, *args: str, input: str = ""
) -> subprocess.CompletedProcess[str]:
    user, group = who
    identity = ["--as", user] + (["--as-group", group] if group else [])
    return cluster.kubectl(*identity, "-n", namespace, *args, input=input or None, check=False)


def _create(
    cluster: LocalCluster, who: tuple[str, str], namespace: str, manifest: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return _as(cluster, who, namespace, "create", "-f", "-", input=json.dumps(manifest))


def _rejected(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0, f"allowed, but must be rejected: {result.stdout}"
    for word in words:
        assert word in result.stderr, result.stderr


def _allowed(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr


def _grant(cluster: LocalCluster, namespace: str, portal: str) -> None:
    """Group team-a and the portal's ServiceAccount may create and edit claims;
    alice may get her own Secret (and no other); the portal holds the chart's
    claim-for-others ClusterRole, bound in this namespace only."""
    cluster.kubectl("create", "serviceaccount", portal, "-n", namespace)
    group = {"kind": "Group", "name": "team-a", "apiGroup": "rbac.authorization.k8s.io"}
    account = {"kind": "ServiceAccount", "name": portal, "namespace": namespace}
    _claimers(cluster, namespace, [group, account])
    rbac = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "alice-creds"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": ["alice-creds"],
                    "verbs": ["get"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "alice-creds"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "alice-creds",
            },
            "subjects": [_user("alice")],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "portal-claims-for-others"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": CLAIM_FOR_OTHERS,
            },
            "subjects": [account],
        },
    ]
    body = {"apiVersion": "v1", "kind": "List", "items": rbac}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    for secret in ("alice-creds", "bob-creds", "carol-creds"):
        cluster.kubectl(
            "create", "secret", "generic", secret, "-n", namespace, "--from-literal=token=x"
        )


def _merge(name: str, patch: dict[str, Any]) -> list[str]:
    return ["patch", f"workspaceclaim/{name}", "--type=merge", "-p", json.dumps(patch)]


def test_owner_is_the_requester_unless_allowed_to_claim_for_others(
    cluster: LocalCluster, namespace: str, claim_policy: None
) -> None:
    _grant(cluster, namespace, "portal")
    portal = (f"system:serviceaccount:{namespace}:portal", "")

    _allowed(_create(cluster, ALICE, namespace, claim_manifest("a1", "p", "alice")))
    _rejected(
        _create(cluster, ALICE, namespace, claim_manifest("a2", "p", "bob")),
        OWNER_RULE,
        "(alice), not bob",
    )
    # A ServiceAccount is its own username too...
    _allowed(_create(cluster, portal, namespace, claim_manifest("p1", "p", portal[0])))
    # ... and with claim-for-others it may claim in anyone's name.
    _allowed(_create(cluster, portal, namespace, claim_manifest("p2", "p", "carol")))
    # Cluster admins hold every permission, claim-for-others included.
    apply(cluster, namespace, claim_manifest("admin", "p", "dave"))

    # Updates that keep the owner are allowed, to anyone who may update claims:
    # the policy does not stand in the way of labels and annotations.
    _allowed(_as(cluster, BOB, namespace, *_merge("a1", {"metadata": {"labels": {"x": "y"}}})))
    # Owner, preset and Secret stay as created, for everyone (the CRD's rules).
    for who in (ALICE, BOB, portal):
        _rejected(
            _as(cluster, who, namespace, *_merge("p2", {"spec": {"owner": who[0]}})),
            "spec.owner is immutable",
        )
    _rejected(
        cluster.kubectl("-n", namespace, *_merge("a1", {"spec": {"owner": "x"}}), check=False),
        "spec.owner is immutable",
    )
    _rejected(
        _as(cluster, ALICE, namespace, *_merge("a1", {"spec": {"presetRef": {"name": "q"}}})),
        "spec.presetRef is immutable",
    )


def test_the_requester_must_be_allowed_to_read_the_owner_secret(
    cluster: LocalCluster, namespace: str, claim_policy: None
) -> None:
    _grant(cluster, namespace, "portal")
    portal = (f"system:serviceaccount:{namespace}:portal", "")

    _allowed(_create(cluster, ALICE, namespace, claim_manifest("a1", "p", "alice", "alice-creds")))
    # alice may create claims but not read bob's Secret: the operator must not read
    # it for her (the confused deputy of issue 16).
    _rejected(
        _create(cluster, ALICE, namespace, claim_manifest("a2", "p", "alice", "bob-creds")),
        SECRET_RULE,
        "Secret bob-creds",
        "alice may not get",
    )
    # Nor a Secret that does not exist yet (she could not get it either).
    _rejected(
        _create(cluster, ALICE, namespace, claim_manifest("a3", "p", "alice", "later-creds")),
        SECRET_RULE,
    )
    # Claiming for others does not lift it: the portal may not read carol's Secret.
    _rejected(
        _create(cluster, portal, namespace, claim_manifest("p1", "p", "carol", "carol-creds")),
        SECRET_RULE,
        "Secret carol-creds",
    )
    # Both rules broken: the API server stops at the first and names it.
    _rejected(
        _create(cluster, BOB, namespace, claim_manifest("b1", "p", "carol", "carol-creds")),
        OWNER_RULE,
    )
    # Someone allowed to update claims cannot swap the Secret either.
    _rejected(
        _as(
            cluster,
            BOB,
            namespace,
            *_merge("a1", {"spec": {"ownerSecretRef": {"name": "bob-creds"}}}),
        ),
        "spec.ownerSecretRef is immutable",
    )


# --- planted workspaces -----------------------------------------------------------------


def _plant(
    cluster: LocalCluster,
    namespace: str,
    name: str,
    thash: str,
    owner_references: list[dict[str, Any]],
    pod_owned: bool = True,
) -> None:
    """A PrebuiltWorkspace and a Ready pod made by someone other than the operator:
    with `pod_owned`, the pod controlled by the workspace (as the operator's are;
    if the operator made one under that name first, that one stays); otherwise
    the pod is there first, under the workspace's name, controlled by nobody."""
    labels = {"prewarm.dev/preset": "pool", "prewarm.dev/template-hash": thash}
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {**labels, "prewarm.dev/workspace": name}},
        "spec": {"containers": [{"name": "evil", "image": "busybox:1.37"}]},
    }
    if not pod_owned:
        apply(cluster, namespace, pod)
    workspace = {
        "apiVersion": "prewarm.dev/v1alpha1",
        "kind": "PrebuiltWorkspace",
        "metadata": {"name": name, "labels": labels, "ownerReferences": owner_references},
        "spec": {"presetRef": {"name": "pool"}, "templateHash": thash},
    }
    apply(cluster, namespace, workspace)
    if pod_owned:
        uid = get(cluster, namespace, "prebuiltworkspace", name)["metadata"]["uid"]
        pod["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "prewarm.dev/v1alpha1",
                "kind": "PrebuiltWorkspace",
                "name": name,
                "uid": uid,
                "controller": True,
            }
        ]
        made = cluster.kubectl(
            "create", "-n", namespace, "-f", "-", input=json.dumps(pod), check=False
        )
        assert made.returncode == 0 or "AlreadyExists" in made.stderr, made.stderr
    cluster.kubectl(
        "-n",
        namespace,
        "patch",
        f"prebuiltworkspace/{name}",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Ready", "podName": name}}),
    )


def test_a_planted_workspace_is_never_handed_to_a_claimant(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    # A paused pool builds and deletes nothing: only claims act on it.
    preset = preset_manifest("pool", 0)
    preset["metadata"]["annotations"] = {"prewarm.dev/paused": "true"}
    apply(cluster, namespace, preset)
    status = wait_until(
        lambda: (
            get(cluster, namespace, "preset", "pool").get("status", {}).get("templateHash")
            and get(cluster, namespace, "preset", "pool")
        ),
        what="the preset's template hash",
    )
    thash = status["status"]["templateHash"]
    uid = status["metadata"]["uid"]
    preset_ref = {
        "apiVersion": "prewarm.dev/v1alpha1",
        "kind": "Preset",
        "name": "pool",
        "uid": uid,
        "controller": True,
    }
    # No controller ownerReference, the current template: the old operator took it.
    _plant(cluster, namespace, "planted-unowned", thash, [])
    # Controlled by the preset (its uid is no secret), current template, but the
    # pod under its name is not controlled by it: the old operator took it too.
    _plant(cluster, namespace, "planted-pod", thash, [preset_ref], pod_owned=False)
    # Controlled by the preset, its pod by it, but not the current template: a
    # member (the pool would delete it as outdated), never a candidate.
    _plant(cluster, namespace, "planted-stale", "0123456789abcdef", [preset_ref])
    foreign = {"planted-unowned", "planted-pod"}
    planted = foreign | {"planted-stale"}
    for name in planted:
        wait_until(
            lambda n=name: (
                get(cluster, namespace, "pod", n).get("status", {}).get("phase") == "Running"
            ),
            what=f"the pod of {name} running",
        )

    for i in range(2):
        apply(cluster, namespace, claim_manifest(f"c{i}", "pool", f"user{i}"))
    for i in range(2):
        claim = wait_until(
            lambda i=i: (
                (c := get(cluster, namespace, "workspaceclaim", f"c{i}"))
                .get("status", {})
                .get("phase")
                == "Bound"
                and c
            ),
            what=f"claim c{i} bound",
        )
        assert claim["status"]["source"] == "cold", claim["status"]
        assert claim["status"]["workspaceName"] not in planted
    for ws in items(cluster, namespace, "prebuiltworkspaces"):
        if ws["metadata"]["name"] in planted:
            assert not ws["spec"].get("owner"), ws
            assert not ws["spec"].get("claimRef"), ws
    # The operator says why it ignores the foreign ones.
    log = operator.log_text()
    for name in foreign:
        assert f"ignoring PrebuiltWorkspace {namespace}/{name}" in log, log[-3000:]
