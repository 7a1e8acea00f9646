"""`helm install`, upgrade and uninstall of the chart on the real local API server, and
its RBAC: `kubectl auth can-i` over allowed and forbidden actions, and the real
operator authenticated as the chart's ServiceAccount converging a preset."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.chart.support import CHART, kget, token_kubeconfig
from tests.e2e.support import wait_until

from prewarm.commands.claim import claim_manifest
from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess
from prewarm.planning.agent_access import agent_role_rules

RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"


def new_namespace(cluster: LocalCluster, prefix: str, restricted: bool = True) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(name)
    if restricted:
        cluster.kubectl("label", "namespace", name, RESTRICTED)
    return name


def helm_install(cluster: LocalCluster, release: str, namespace: str, *args: str) -> None:
    # --take-ownership: the session's cluster fixture applied the same CRDs from crds/.
    result = cluster.helm(
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "--take-ownership",
        "--wait=watcher",
        "--timeout=3m",
        *args,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def pods(cluster: LocalCluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    return list(kget(cluster, "pods", "-n", namespace, "-l", selector)["items"])


def running_and_ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return pod["status"].get("phase") == "Running" and conditions.get("Ready") == "True"


def operator_pod(cluster: LocalCluster, namespace: str, release: str) -> dict[str, Any]:
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"

    def ready() -> dict[str, Any] | None:
        found = [p for p in pods(cluster, namespace, selector) if running_and_ready(p)]
        return found[0] if len(found) == 1 else None

    return wait_until(ready, timeout=60, what=f"the operator pod of {release} Running and Ready")


def everything_labelled(cluster: LocalCluster, release: str) -> set[str]:
    """kind/namespace/name of every object, of every listable resource, with the release label."""
    resources = cluster.kubectl("api-resources", "--verbs=list", "-o", "name").stdout.split()
    found = cluster.kubectl(
        "get",
        ",".join(r for r in resources if r not in {"events", "events.events.k8s.io"}),
        "-A",
        "-l",
        f"app.kubernetes.io/instance={release}",
        "-o",
        "json",
    ).stdout
    return {
        "/".join(
            filter(
                None,
                [item["kind"], item["metadata"].get("namespace"), item["metadata"]["name"]],
            )
        )
        for item in json.loads(found)["items"]
    }


def prebound_volume(cluster: LocalCluster, namespace: str, claim: str) -> str:
    """A PersistentVolume bound in advance to the bundled PostgreSQL's claim."""
    name = f"pv-{uuid.uuid4().hex[:8]}"
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "8Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "hostPath": {"path": f"/tmp/{name}"},
            "claimRef": {"namespace": namespace, "name": claim},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(volume))
    return name


# --- install, upgrade, uninstall ---------------------------------------------------------


def test_install_upgrade_uninstall_leave_no_orphans(cluster: LocalCluster) -> None:
    release = f"pw{uuid.uuid4().hex[:6]}"
    ns = new_namespace(cluster, "pw-life")
    other = new_namespace(cluster, "pw-team")
    volume = prebound_volume(cluster, ns, f"data-{release}-prewarm-postgresql-0")
    try:
        # Default values: bundled PostgreSQL, CRDs, cluster-wide RBAC, in a namespace that
        # enforces the "restricted" Pod Security Standard.
        helm_install(cluster, release, ns)
        pod = operator_pod(cluster, ns, release)
        assert pod["spec"]["nodeName"].startswith("kwok-node-")
        assert pod["spec"]["serviceAccountName"] == f"{release}-prewarm"
        wait_until(
            lambda: [
                p
                for p in pods(cluster, ns, "app.kubernetes.io/component=postgresql")
                if running_and_ready(p)
            ],
            timeout=60,
            what="the bundled PostgreSQL pod Running and Ready",
        )
        kget(cluster, "clusterrole", f"{release}-prewarm")
        crd = kget(cluster, "crd", "presets.prewarm.dev")
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

        # Upgrade: change a value, add the dashboard, switch to namespaced RBAC.
        result = cluster.helm(
            "upgrade",
            release,
            str(CHART),
            "-n",
            ns,
            "--reuse-values",
            "--set",
            "operator.hardLimit=5",
            "--set",
            "dashboard.enabled=true",
            "--set",
            f"watchNamespaces={{{other}}}",
            "--wait=watcher",
            "--timeout=3m",
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        pod = operator_pod(cluster, ns, release)
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["PREWARM_HARD_LIMIT"] == "5"
        assert env["PREWARM_NAMESPACES"] == f'["{other}"]'
        kget(cluster, "configmap", "-n", ns, f"{release}-prewarm-dashboard")
        kget(cluster, "role", "-n", other, f"{release}-prewarm")
        gone = cluster.kubectl("get", "clusterrole", f"{release}-prewarm", check=False)
        assert gone.returncode != 0, "the upgrade left the cluster-wide ClusterRole behind"

        # Back without the dashboard: the upgrade removes what the values no longer render.
        result = cluster.helm(
            "upgrade",
            release,
            str(CHART),
            "-n",
            ns,
            "--reuse-values",
            "--set",
            "dashboard.enabled=false",
            "--wait=watcher",
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        cm = cluster.kubectl(
            "get", "configmap", "-n", ns, f"{release}-prewarm-dashboard", check=False
        )
        assert cm.returncode != 0

        result = cluster.helm("uninstall", release, "-n", ns, "--wait", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "kept due to the resource policy" in result.stdout + result.stderr

        kept = {
            "CustomResourceDefinition/presets.prewarm.dev",
            "CustomResourceDefinition/prebuiltworkspaces.prewarm.dev",
            "CustomResourceDefinition/workspaceclaims.prewarm.dev",
            # persistentVolumeClaimRetentionPolicy.whenDeleted: Retain (the ledger's history)
            f"PersistentVolumeClaim/{ns}/data-{release}-prewarm-postgresql-0",
            # ...and the password that opens it (helm.sh/resource-policy: keep)
            f"Secret/{ns}/{release}-prewarm-postgresql",
        }
        wait_until(
            lambda: everything_labelled(cluster, release) == kept,
            timeout=60,
            what=f"only {sorted(kept)} left after helm uninstall",
        )
    finally:
        cluster.helm("uninstall", release, "-n", ns, "--wait", check=False)
        for name in (ns, other):
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", volume, "--wait=false", check=False)


# --- RBAC ------------------------------------------------------------------------------------


class Release:
    def __init__(self, cluster: LocalCluster, name: str, namespace: str, watched: list[str]):
        self.cluster = cluster
        self.name = name
        self.namespace = namespace
        self.watched = watched

    @property
    def account(self) -> str:
        return f"{self.name}-prewarm"

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.account}"

    def can(self, verb: str, resource: str, namespace: str | None, *extra: str) -> bool:
        where = ["-n", namespace] if namespace else ["--all-namespaces"]
        result = self.cluster.kubectl(
            "auth", "can-i", verb, resource, *where, *extra, "--as", self.user, check=False
        )
        answer = result.stdout.strip()
        assert answer in {"yes", "no"}, result.stdout + result.stderr
        return answer == "yes"


def _release(cluster: LocalCluster, watched: list[str]) -> Iterator[Release]:
    ns = new_namespace(cluster, "pw-rbac")
    name = f"pw{uuid.uuid4().hex[:6]}"
    args = [
        "--set",
        "crds.install=false",
        "--set",
        "postgresql.enabled=false",
        "--set",
        "database.existingSecret=ledger",
    ]
    if watched:
        args += ["--set", "watchNamespaces={" + ",".join(watched) + "}"]
    helm_install(cluster, name, ns, *args)
    try:
        yield Release(cluster, name, ns, watched)
    finally:
        cluster.helm("uninstall", name, "-n", ns, "--wait", check=False)
        for n in (ns, *watched):
            cluster.kubectl("delete", "namespace", n, "--wait=false", check=False)


@pytest.fixture(scope="module")
def clusterwide(cluster: LocalCluster) -> Iterator[Release]:
    yield from _release(cluster, [])


@pytest.fixture(scope="module")
def namespaced(cluster: LocalCluster) -> Iterator[Release]:
    yield from _release(cluster, [new_namespace(cluster, "pw-watched", restricted=False)])


# (verb, resource, extra flags): what the operator must be able to do in a watched namespace.
ALLOWED = [
    ("get", "presets.prewarm.dev", ()),
    ("list", "presets.prewarm.dev", ()),
    ("watch", "presets.prewarm.dev", ()),
    ("patch", "presets.prewarm.dev", ("--subresource=status",)),
    ("create", "prebuiltworkspaces.prewarm.dev", ()),
    ("patch", "prebuiltworkspaces.prewarm.dev", ()),
    ("delete", "prebuiltworkspaces.prewarm.dev", ()),
    ("patch", "prebuiltworkspaces.prewarm.dev", ("--subresource=status",)),
    ("watch", "workspaceclaims.prewarm.dev", ()),
    ("patch", "workspaceclaims.prewarm.dev", ("--subresource=status",)),
    ("update", "prebuiltworkspaces.prewarm.dev", ("--subresource=finalizers",)),
    ("create", "pods", ()),
    ("patch", "pods", ()),
    ("watch", "pods", ()),
    # Never used by the operator: RBAC lets it grant a workspace's agent exec
    # into that one pod (issue 17: the hook runs in the workspace) only if it
    # holds exec itself (charts/prewarm/README.md, docs/agent.md).
    ("get", "pods", ("--subresource=exec",)),
    ("create", "pods", ("--subresource=exec",)),
    ("get", "secrets", ()),
    ("create", "secrets", ()),
    ("create", "serviceaccounts", ()),
    ("create", "roles.rbac.authorization.k8s.io", ()),
    ("create", "rolebindings.rbac.authorization.k8s.io", ()),
    ("create", "events", ()),
]
# ... and what it must not.
FORBIDDEN = [
    ("delete", "presets.prewarm.dev", ()),
    ("create", "presets.prewarm.dev", ()),
    ("patch", "presets.prewarm.dev", ()),
    ("update", "workspaceclaims.prewarm.dev", ()),
    ("patch", "workspaceclaims.prewarm.dev", ()),
    ("delete", "workspaceclaims.prewarm.dev", ()),
    # The claim policy's permission to claim in someone else's name (issue 16):
    # the operator never creates claims, so it must not hold it.
    ("claim-for-others", "workspaceclaims.prewarm.dev", ()),
    ("update", "prebuiltworkspaces.prewarm.dev", ()),
    ("delete", "pods", ()),
    ("list", "secrets", ()),
    ("watch", "secrets", ()),
    ("delete", "secrets", ()),
    ("delete", "serviceaccounts", ()),
    ("create", "serviceaccounts", ("--subresource=token",)),
    ("delete", "roles.rbac.authorization.k8s.io", ()),
    ("escalate", "roles.rbac.authorization.k8s.io", ()),
    ("bind", "roles.rbac.authorization.k8s.io", ()),
    ("create", "deployments.apps", ()),
    ("create", "configmaps", ()),
    ("delete", "events", ()),
]
CLUSTER_FORBIDDEN = [
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("delete", "nodes"),
    ("patch", "nodes"),
    ("create", "namespaces"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io"),
    ("impersonate", "users"),
    ("impersonate", "serviceaccounts"),
]


def check_matrix(release: Release, namespace: str | None) -> list[str]:
    wrong = [
        f"{verb} {resource} {' '.join(extra)}: forbidden but needed"
        for verb, resource, extra in ALLOWED
        if not release.can(verb, resource, namespace, *extra)
    ]
    wrong += [
        f"{verb} {resource} {' '.join(extra)}: allowed but not needed"
        for verb, resource, extra in FORBIDDEN
        if release.can(verb, resource, namespace, *extra)
    ]
    wrong += [
        f"{verb} {resource} (cluster): allowed but not needed"
        for verb, resource in CLUSTER_FORBIDDEN
        if release.can(verb, resource, None)
    ]
    return wrong


def test_cluster_wide_rbac_allows_the_operators_work_and_nothing_more(
    clusterwide: Release,
) -> None:
    assert check_matrix(clusterwide, "default") == []
    assert check_matrix(clusterwide, None) == []
    assert clusterwide.can("watch", "customresourcedefinitions.apiextensions.k8s.io", None)
    # Cluster-wide mode needs no namespace listing (kopf lists namespaces only when
    # it watches some of them).
    assert not clusterwide.can("list", "namespaces", None)


def test_leader_election_is_one_lease_in_the_release_namespace(clusterwide: Release) -> None:
    lease = "leases.coordination.k8s.io"
    ns = clusterwide.namespace
    assert clusterwide.can("create", lease, ns)
    assert clusterwide.can("get", f"{lease}/{clusterwide.account}", ns)
    assert clusterwide.can("update", f"{lease}/{clusterwide.account}", ns)
    assert not clusterwide.can("update", f"{lease}/kube-scheduler", ns)
    assert not clusterwide.can("delete", f"{lease}/{clusterwide.account}", ns)
    assert not clusterwide.can("create", lease, "kube-system")
    assert not clusterwide.can("update", f"{lease}/kube-controller-manager", "kube-system")


def test_namespaced_rbac_is_confined_to_the_watched_namespaces(namespaced: Release) -> None:
    (watched,) = namespaced.watched
    assert check_matrix(namespaced, watched) == []
    for verb, resource, extra in ALLOWED:
        assert not namespaced.can(verb, resource, "default", *extra), (verb, resource)
        assert not namespaced.can(verb, resource, None, *extra), (verb, resource)
    assert not namespaced.can("get", "secrets", "kube-system")
    assert not namespaced.can("get", "secrets", namespaced.namespace)
    assert not namespaced.can("list", "presets.prewarm.dev", None)
    assert namespaced.can("watch", "namespaces", None)
    assert namespaced.can("list", "customresourcedefinitions.apiextensions.k8s.io", None)


def test_the_operator_can_grant_the_agent_role_it_creates(
    clusterwide: Release, cluster: LocalCluster, tmp_path: Path
) -> None:
    """RBAC only lets an account create a Role that grants what it holds itself."""
    kubeconfig = token_kubeconfig(
        cluster, clusterwide.namespace, clusterwide.account, tmp_path / "kubeconfig"
    )
    ns = new_namespace(cluster, "pw-agent", restricted=False)
    try:

        def create_role(name: str, rules: list[dict[str, Any]]) -> Any:
            role = {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": name, "namespace": ns},
                "rules": rules,
            }
            return cluster.kubectl(
                "--kubeconfig",
                str(kubeconfig),
                "create",
                "-f",
                "-",
                input=json.dumps(role),
                check=False,
            )

        granted = create_role("ws-1-agent", agent_role_rules("ws-1"))
        assert granted.returncode == 0, granted.stderr
        wider = create_role(
            "too-much", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]
        )
        assert wider.returncode != 0
        assert "forbidden" in wider.stderr
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


# --- the real operator, as the chart's ServiceAccount --------------------------------------

DENIED = re.compile(r"\b403\b|Forbidden|forbidden|Not enough permissions")


def preset(name: str, instances: int) -> dict[str, Any]:
    return {
        "apiVersion": "prewarm.dev/v1alpha1",
        "kind": "Preset",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "workspace", "image": "busybox:1.37", "command": ["sleep"]}
                    ]
                }
            },
            "prebuilds": {"instances": instances},
        },
    }


def preset_ready(cluster: LocalCluster, namespace: str, name: str, instances: int) -> bool:
    status = kget(cluster, "preset", "-n", namespace, name).get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return conditions.get("Ready") == "True" and status.get("ready") == instances


@pytest.mark.parametrize("mode", ["clusterwide", "namespaced"])
def test_operator_as_the_chart_service_account_converges_a_preset(
    mode: str,
    request: pytest.FixtureRequest,
    cluster: LocalCluster,
    ledger_dsn: str,
    tmp_path: Path,
) -> None:
    release: Release = request.getfixturevalue(mode)
    kubeconfig = token_kubeconfig(
        cluster, release.namespace, release.account, tmp_path / "kubeconfig"
    )
    if release.watched:
        (ns,) = release.watched
    else:
        ns = new_namespace(cluster, "pw-work", restricted=False)
    op = OperatorProcess(
        cluster,
        ledger_dsn,
        ns if release.watched else None,
        tmp_path / "operator.log",
        KUBECONFIG=str(kubeconfig),
        # As the Deployment sets them: the Lease is the release's, in its namespace.
        PREWARM_LEASE_NAME=release.account,
        PREWARM_LEASE_NAMESPACE=release.namespace,
        POD_NAMESPACE=release.namespace,
    )
    op.start()
    try:
        pool = preset("pool", 2)
        # With a hook: the operator creates each workspace's agent Role and RoleBinding
        # (and grants pods/exec) as the chart's account.
        pool["spec"]["agent"] = {"onClaim": ["/bin/true"]}
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pool))
        wait_until(
            lambda: preset_ready(cluster, ns, "pool", 2),
            timeout=60,
            what=f"preset pool Ready with 2 instances, operator as {release.user}",
        )
        cluster.kubectl(
            "create", "secret", "generic", "alice-credentials", "-n", ns, "--from-literal=t=x"
        )
        claim = claim_manifest("alice", "pool", "alice", "alice-credentials")
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(claim))
        bound = wait_until(
            lambda: (
                (kget(cluster, "wsc", "-n", ns, "alice").get("status") or {}).get("phase")
                == "Bound"
            ),
            timeout=60,
            what="the claim Bound",
        )
        assert bound
        # The pool refills after the claim took one.
        wait_until(lambda: preset_ready(cluster, ns, "pool", 2), timeout=60, what="pool refilled")
        holder = kget(cluster, "lease", "-n", release.namespace, release.account)
        assert holder["spec"]["holderIdentity"], "the operator never took its Lease"
    except AssertionError as failure:
        status = kget(cluster, "presets", "-n", ns).get("items")
        raise AssertionError(
            f"{failure}\n--- presets ---\n{json.dumps(status)[-2000:]}"
            f"\n--- operator log ---\n{op.log_text()[-4000:]}"
        ) from None
    finally:
        op.stop()
        if not release.watched:
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    log = op.log_text()
    denied = [line for line in log.splitlines() if DENIED.search(line)]
    assert not denied, "the operator was denied something:\n" + "\n".join(denied[:20])
    # A RoleBinding created before its Role is refused (404) for an account that
    # is not cluster-admin: the operator must create the Role first (seen on the
    # real node, where builds then waited for a retry).
    failed = [line for line in log.splitlines() if "rolebindings.rbac" in line]
    assert not failed, "creating an agent RoleBinding failed:\n" + "\n".join(failed[:20])


# --- the kubectl path ---------------------------------------------------------------------


def test_deploy_manifest_is_accepted_by_the_api_server(cluster: LocalCluster) -> None:
    """deploy/prewarm.yaml, applied server-side in dry-run (admission, schemas, Pod Security)."""
    manifest = CHART.parents[1] / "deploy" / "prewarm.yaml"
    cluster.kubectl("create", "namespace", "prewarm-system")
    cluster.kubectl("label", "namespace", "prewarm-system", RESTRICTED)
    try:
        # --force-conflicts: earlier tests of this session let Helm adopt the CRDs.
        result = cluster.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            str(manifest),
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        applied = set(result.stdout.split("\n"))
        assert "deployment.apps/prewarm serverside-applied (server dry run)" in applied
        assert "statefulset.apps/prewarm-postgresql serverside-applied (server dry run)" in applied
    finally:
        cluster.kubectl("delete", "namespace", "prewarm-system", "--wait=false", check=False)
