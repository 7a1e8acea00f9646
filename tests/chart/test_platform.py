"""What a platform team expects of the chart (issue 18): a PodDisruptionBudget,
topologySpreadConstraints, extra volumes, mounts and containers (a CA file for
sslmode=verify-full, a SQL proxy sidecar), and ClusterRoles aggregated into the
built-in edit/admin/view roles so tenants work with claims without cluster-admin."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from tests.chart.support import Manifest, find, one, template
from tests.chart.test_install import helm_install, new_namespace

from prewarm.devenv.cluster import LocalCluster

NAME = "prewarm"


def pod_spec(docs: list[Manifest]) -> dict[str, Any]:
    return dict(one(docs, "Deployment", NAME)["spec"]["template"]["spec"])


def test_pod_disruption_budget() -> None:
    assert not find(template(), "PodDisruptionBudget")
    docs = template(**{"podDisruptionBudget.enabled": "true", "replicaCount": "2"})
    pdb = one(docs, "PodDisruptionBudget", NAME)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    pod_labels = one(docs, "Deployment", NAME)["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # It selects the operator only, never the bundled PostgreSQL.
    pg = one(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert not pdb["spec"]["selector"]["matchLabels"].items() <= pg.items()
    by_share = one(
        template(
            "--set-string",
            "podDisruptionBudget.minAvailable=50%",
            **{"podDisruptionBudget.enabled": "true"},
        ),
        "PodDisruptionBudget",
    )
    assert by_share["spec"] == {
        "minAvailable": "50%",
        "selector": pdb["spec"]["selector"],
    }


def test_topology_spread_constraints_select_the_operator_pods() -> None:
    assert "topologySpreadConstraints" not in pod_spec(template())
    zone = {
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
    }
    own = {
        **zone,
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": {"tier": "ops"}},
    }
    spec = pod_spec(template("--set-json", f"topologySpreadConstraints={json.dumps([zone, own])}"))
    first, second = spec["topologySpreadConstraints"]
    assert first["labelSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "prewarm",
        "app.kubernetes.io/instance": "prewarm",
        "app.kubernetes.io/component": "operator",
    }
    assert {k: v for k, v in first.items() if k != "labelSelector"} == zone
    assert second == own  # a selector of its own is kept as it is


def test_a_ca_file_and_a_sql_proxy_sidecar() -> None:
    """The two cases the issue names: a CA for sslmode=verify-full and a proxy sidecar."""
    volume = {"name": "db-ca", "configMap": {"name": "db-ca"}}
    mount = {"name": "db-ca", "mountPath": "/etc/prewarm/db-ca", "readOnly": True}
    proxy = {
        "name": "sql-proxy",
        "image": "example.com/sql-proxy:2.14",
        "args": ["--port=5432", "project:region:db"],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    env = [{"name": "PGSSLROOTCERT", "value": "/etc/prewarm/db-ca/ca.crt"}]
    spec = pod_spec(
        template(
            "--set-json",
            f"extraVolumes={json.dumps([volume])}",
            "--set-json",
            f"extraVolumeMounts={json.dumps([mount])}",
            "--set-json",
            f"extraContainers={json.dumps([proxy])}",
            "--set-json",
            f"operator.extraEnv={json.dumps(env)}",
        )
    )
    operator, sidecar = spec["containers"]
    assert operator["name"] == "operator"
    assert sidecar == proxy
    assert operator["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}, mount]
    assert [v["name"] for v in spec["volumes"]] == ["tmp", "db-ca"]
    assert spec["volumes"][1] == volume
    assert operator["env"][-1] == env[0]
    # Defaults add nothing.
    default = pod_spec(template())
    assert [c["name"] for c in default["containers"]] == ["operator"]
    assert [v["name"] for v in default["volumes"]] == ["tmp"]


def test_priority_class_name() -> None:
    assert "priorityClassName" not in pod_spec(template())
    spec = pod_spec(template(priorityClassName="platform-critical"))
    assert spec["priorityClassName"] == "platform-critical"


def test_user_roles_are_aggregated_and_grant_claims_not_presets() -> None:
    docs = template()
    edit = one(docs, "ClusterRole", f"{NAME}-edit")
    view = one(docs, "ClusterRole", f"{NAME}-view")
    labels = edit["metadata"]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert labels["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    # Bound to nobody: the built-in roles pick them up.
    bound = {
        b["roleRef"]["name"] for b in find(docs, "ClusterRoleBinding") + find(docs, "RoleBinding")
    }
    assert not bound & {f"{NAME}-edit", f"{NAME}-view"}
    for role in (edit, view):
        for rule in role["rules"]:
            assert rule["apiGroups"] == ["prewarm.dev"]
            if set(rule["verbs"]) - {"get", "list", "watch"}:
                assert rule["resources"] == ["workspaceclaims"]
    assert not find(template(**{"userRoles.enabled": "false"}), "ClusterRole", f"{NAME}-edit")


def can(cluster: LocalCluster, user: str, verb: str, resource: str, namespace: str) -> bool:
    result = cluster.kubectl(
        "auth", "can-i", verb, resource, "-n", namespace, f"--as={user}", check=False
    )
    return result.stdout.strip() == "yes"


def test_tenants_with_the_builtin_roles_manage_claims_and_read_presets(
    cluster: LocalCluster,
) -> None:
    release = f"pw{uuid.uuid4().hex[:6]}"
    ns = new_namespace(cluster, "pw-roles")
    team = new_namespace(cluster, "pw-tenant")
    editor, viewer = f"dev-{uuid.uuid4().hex[:6]}", f"auditor-{uuid.uuid4().hex[:6]}"
    try:
        helm_install(cluster, release, ns, "--set", "postgresql.enabled=false",
                     "--set", "database.existingSecret=ledger")  # fmt: skip
        cluster.kubectl("create", "rolebinding", "dev", "-n", team, "--clusterrole=edit",
                        f"--user={editor}")  # fmt: skip
        cluster.kubectl("create", "rolebinding", "audit", "-n", team, "--clusterrole=view",
                        f"--user={viewer}")  # fmt: skip
        # The aggregation controller fills edit and view in a moment.
        deadline = time.monotonic() + 60
        while not can(cluster, editor, "create", "workspaceclaims.prewarm.dev", team):
            assert time.monotonic() < deadline, "edit never got the claims (aggregation)"
            time.sleep(1)
        for verb in ("create", "delete", "patch", "list"):
            assert can(cluster, editor, verb, "workspaceclaims.prewarm.dev", team)
        for resource in ("presets.prewarm.dev", "prebuiltworkspaces.prewarm.dev"):
            assert can(cluster, editor, "list", resource, team)
            assert not can(cluster, editor, "create", resource, team)
            assert not can(cluster, editor, "delete", resource, team)
        while not can(cluster, viewer, "list", "presets.prewarm.dev", team):
            assert time.monotonic() < deadline, "view never got the presets (aggregation)"
            time.sleep(1)
        for resource in ("workspaceclaims", "presets", "prebuiltworkspaces"):
            assert can(cluster, viewer, "get", f"{resource}.prewarm.dev", team)
        assert not can(cluster, viewer, "create", "workspaceclaims.prewarm.dev", team)
        # Only in the namespace they were given.
        assert not can(cluster, editor, "create", "workspaceclaims.prewarm.dev", "default")
    finally:
        cluster.helm("uninstall", release, "-n", ns, "--wait", check=False)
        for name in (ns, team):
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
