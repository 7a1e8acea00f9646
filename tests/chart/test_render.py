"""The chart as rendered by `helm template` and checked by `helm lint`: defaults, toggles,
CRDs from crds/, the RBAC table, the values schema and the kubectl manifest."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from tests.chart.support import (
    CHART,
    REPO,
    Manifest,
    find,
    helm,
    kinds,
    one,
    schema_keys,
    template,
    template_error,
)

import prewarm.metrics  # noqa: F401  (registers every metric)

NAME = "prewarm"  # release "prewarm" → full name "prewarm"


def container(docs: list[Manifest]) -> dict[str, Any]:
    deployment = one(docs, "Deployment", NAME)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env(docs: list[Manifest]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs)["env"]}


# --- lint ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["-f", str(CHART / "values-production.yaml")],
        ["--set", "watchNamespaces={team-a,team-b}", "--set", "dashboard.enabled=true"],
    ],
    ids=["defaults", "production", "namespaced"],
)
def test_helm_lint_is_clean(extra: list[str]) -> None:
    result = helm("lint", "--strict", str(CHART), *extra, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


# --- defaults ----------------------------------------------------------------------------


def test_defaults_render_the_operator_with_bundled_postgresql_and_cluster_rbac() -> None:
    docs = template()
    assert kinds(docs) == {
        "CustomResourceDefinition",
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "StatefulSet",
        "NetworkPolicy",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    deployment = one(docs, "Deployment", NAME)
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    # Leader election: the new pod waits for the Lease, so upgrades can roll.
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == NAME
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(docs)
    assert c["image"] == "ghcr.io/prewarm/prewarm:0.1.0"
    assert c["args"] == ["run"]
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert c["resources"]["requests"]
    assert c["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 9090, "health": 8080}
    for probe in ("startupProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp"}

    e = env(docs)
    assert e["PREWARM_NAMESPACES"] == "[]"
    assert e["PREWARM_METRICS_PORT"] == "9090"
    assert e["PREWARM_HEALTH_PORT"] == "8080"
    assert e["PREWARM_DATABASE_URL"] == "postgresql://prewarm@prewarm-postgresql:5432/prewarm"
    assert e["PGPASSWORD"] == {"secretKeyRef": {"name": "prewarm-postgresql", "key": "password"}}
    assert e["PREWARM_LEADER_ELECTION"] == "true"
    assert e["PREWARM_LEASE_NAME"] == NAME
    assert e["PREWARM_LEASE_NAMESPACE"] == "prewarm-system"
    assert e["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}

    service = one(docs, "Service", "prewarm-metrics")
    assert service["spec"]["ports"][0]["port"] == 9090
    pod_labels = spec["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    # The bundled PostgreSQL's selector must not match the operator pod (and vice versa).
    pg = one(docs, "StatefulSet", "prewarm-postgresql")
    assert not pg["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    assert [r["metadata"]["name"] for r in find(docs, "Role")] == [
        f"{NAME}-leader-election",
        f"{NAME}-self",
    ]
    assert {d["metadata"]["name"] for d in find(docs, "ClusterRole")} == {
        NAME,
        f"{NAME}-discovery",
        f"{NAME}-claim-for-others",
        f"{NAME}-edit",
        f"{NAME}-view",
    }
    # Every namespaced object lands in the release namespace.
    cluster_scoped = {
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for doc in docs:
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"]["namespace"] == "prewarm-system", doc["kind"]


def test_every_object_carries_the_release_labels() -> None:
    for doc in template("--set", "prometheusRule.enabled=true,serviceMonitor.enabled=true"):
        labels = doc["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/instance") == "prewarm", doc["kind"]
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", doc["kind"]


def test_leader_election_toggle() -> None:
    docs = template(**{"leaderElection.enabled": "false"})
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert not find(docs, "Role", f"{NAME}-leader-election")
    e = env(docs)
    assert e["PREWARM_LEADER_ELECTION"] == "false"
    assert "PREWARM_LEASE_NAME" not in e
    lease_role = one(template(), "Role", f"{NAME}-leader-election")
    by_verb = {tuple(r["verbs"]): r for r in lease_role["rules"]}
    assert "resourceNames" not in by_verb[("create",)]
    assert by_verb[("get", "update")]["resourceNames"] == [NAME]


def test_an_offline_render_carries_no_password_and_never_changes() -> None:
    """`helm template` (Argo CD, deploy/generate.sh) cannot look up the existing Secret:
    it renders none, rather than a fresh password that would replace the real one."""
    first, second = template(), template()
    assert not find(first, "Secret")
    assert first == second
    pg = one(first, "StatefulSet", "prewarm-postgresql")
    pg_env = {e["name"]: e for e in pg["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "prewarm-postgresql",
        "key": "password",
    }
    assert env(first)["PGPASSWORD"]["secretKeyRef"]["name"] == "prewarm-postgresql"


def test_a_given_password_is_rendered_and_kept_on_uninstall() -> None:
    def password(docs: list[Manifest]) -> str:
        return base64.b64decode(one(docs, "Secret")["data"]["password"]).decode()

    docs = template(**{"postgresql.auth.password": "s3cret"})
    assert password(docs) == "s3cret"
    secret = one(docs, "Secret", "prewarm-postgresql")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


# --- CRDs ---------------------------------------------------------------------------------


def repository_crds() -> dict[str, Manifest]:
    return {
        doc["metadata"]["name"]: doc
        for path in sorted((REPO / "crds").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }


def test_chart_crds_are_the_repository_crds() -> None:
    """One source: files/crds holds copies of the repository's crds/ (not a symlink), and
    the rendered CRDs equal them."""
    copies = CHART / "files" / "crds"
    assert not copies.is_symlink()
    assert sorted(p.name for p in copies.glob("*.yaml")) == sorted(
        p.name for p in (REPO / "crds").glob("*.yaml")
    )
    for path in copies.glob("*.yaml"):
        assert path.read_bytes() == (REPO / "crds" / path.name).read_bytes(), (
            f"{path} differs from crds/{path.name}: run `make deploy-manifests`"
        )
    rendered = {d["metadata"]["name"]: d for d in find(template(), "CustomResourceDefinition")}
    source = repository_crds()
    assert set(rendered) == set(source)
    assert len(source) == 3
    for name, crd in rendered.items():
        annotations = crd["metadata"].pop("annotations")
        labels = crd["metadata"].pop("labels")
        assert annotations["helm.sh/resource-policy"] == "keep"
        assert labels["app.kubernetes.io/instance"] == "prewarm"
        original = json.loads(json.dumps(source[name]))
        original["metadata"].pop("annotations", None)
        original["metadata"].pop("labels", None)
        assert crd == original, f"chart CRD {name} differs from crds/"


def test_crds_render_from_a_copy_of_the_chart_without_symlinks(tmp_path: Path) -> None:
    """Tools that copy a chart and drop symlinks (Flux) still get the CRDs; a chart whose
    CRD files are gone fails to render, loudly, instead of installing no CRDs."""
    copy = tmp_path / "prewarm"
    shutil.copytree(CHART, copy, symlinks=True)
    for link in [p for p in copy.rglob("*") if p.is_symlink()]:
        link.unlink()  # what such a tool does
    rendered = helm("template", "prewarm", str(copy)).stdout
    crds = [
        d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "CustomResourceDefinition"
    ]
    assert len(crds) == 3
    for path in (copy / "files" / "crds").glob("*.yaml"):
        path.unlink()
    result = helm("template", "prewarm", str(copy), check=False)
    assert result.returncode != 0
    assert "the chart has no CRDs in files/crds/*.yaml" in result.stderr
    # Unless the CRDs are someone else's.
    helm("template", "prewarm", str(copy), "--set", "crds.install=false")


def test_crds_toggles() -> None:
    assert not find(template(**{"crds.install": "false"}), "CustomResourceDefinition")
    unkept = find(template(**{"crds.keep": "false"}), "CustomResourceDefinition")
    assert len(unkept) == 3
    for crd in unkept:
        assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})


# --- toggles ------------------------------------------------------------------------------


def test_external_database_from_an_existing_secret() -> None:
    docs = template(
        **{
            "postgresql.enabled": "false",
            "database.existingSecret": "ledger",
            "database.existingSecretKey": "dsn",
        }
    )
    assert not find(docs, "StatefulSet")
    assert not find(docs, "Secret")
    assert not find(docs, "NetworkPolicy")
    assert [s["metadata"]["name"] for s in find(docs, "Service")] == ["prewarm-metrics"]
    e = env(docs)
    assert e["PREWARM_DATABASE_URL"] == {"secretKeyRef": {"name": "ledger", "key": "dsn"}}
    assert "PGPASSWORD" not in e


def test_bundled_postgresql_with_an_existing_password_secret() -> None:
    docs = template(**{"postgresql.auth.existingSecret": "pg-pass"})
    assert not find(docs, "Secret")
    pg = one(docs, "StatefulSet", "prewarm-postgresql")
    pg_env = {e["name"]: e for e in pg["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "pg-pass"
    assert env(docs)["PGPASSWORD"]["secretKeyRef"]["name"] == "pg-pass"


def test_bundled_postgresql_is_restricted_and_persistent() -> None:
    pg = one(template(), "StatefulSet", "prewarm-postgresql")
    pod = pg["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    c = pod["containers"][0]
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    (claim,) = pg["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert claim["metadata"]["labels"]["app.kubernetes.io/instance"] == "prewarm"
    assert pg["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"


def test_service_monitor_toggle() -> None:
    assert not find(template(), "ServiceMonitor")
    docs = template(**{"serviceMonitor.enabled": "true", "serviceMonitor.labels.release": "kps"})
    sm = one(docs, "ServiceMonitor", NAME)
    assert sm["metadata"]["labels"]["release"] == "kps"
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["honorLabels"] is True
    service = one(docs, "Service", "prewarm-metrics")
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"]["matchNames"] == ["prewarm-system"]
    # No jobLabel: the Prometheus Operator names the job after the Service, the job
    # that the alerts select.
    assert "jobLabel" not in sm["spec"]


def rule_groups(docs: list[Manifest]) -> list[dict[str, Any]]:
    return list(one(docs, "PrometheusRule", NAME)["spec"]["groups"])


def test_prometheus_rule_toggle_and_alerts() -> None:
    assert not find(template(), "PrometheusRule")
    docs = template(
        **{"prometheusRule.enabled": "true", "prometheusRule.alertLabels.team": "platform"}
    )
    rules = {r["alert"]: r for g in rule_groups(docs) for r in g["rules"]}
    assert set(rules) == {
        "PrewarmPresetHardLimited",
        "PrewarmPresetValidationFailed",
        "PrewarmPoolExhausted",
        "PrewarmLedgerDown",
        "PrewarmOperatorDown",
    }
    assert "prewarm_preset_hard_limited" in rules["PrewarmPresetHardLimited"]["expr"]
    assert "== 1" in rules["PrewarmPresetValidationFailed"]["expr"]
    exhausted = " ".join(rules["PrewarmPoolExhausted"]["expr"].split())
    assert 'rate(prewarm_claim_misses_total{job="prewarm-metrics"}[10m])) > 0' in exhausted
    assert '(prewarm_preset_eligible{job="prewarm-metrics"}) == 0' in exhausted
    up = 'up{job="prewarm-metrics",namespace="prewarm-system"}'
    assert " ".join(rules["PrewarmOperatorDown"]["expr"].split()) == (
        f"max by (job, namespace) ({up}) == 0 or absent({up})"
    )
    for rule in rules.values():
        assert rule["labels"]["team"] == "platform"
        # Helm must hand Prometheus its own template syntax untouched.
        assert "{{" not in rule["expr"]
    assert "{{ $labels.preset }}" in rules["PrewarmPresetHardLimited"]["annotations"]["summary"]


def test_dashboard_toggle() -> None:
    assert not find(template(), "ConfigMap")
    docs = template(**{"dashboard.enabled": "true", "dashboard.namespace": "monitoring"})
    cm = one(docs, "ConfigMap", "prewarm-dashboard")
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["prewarm.json"])
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("pool", "claims", "latency", "failures"):
        assert topic in titles
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in (
        "prewarm_preset_desired",
        "prewarm_preset_eligible",
        "prewarm_claims_total",
        "prewarm_claim_duration_seconds_bucket",
        "prewarm_claim_reinit_seconds_bucket",
        "prewarm_claim_reinit_failures_total",
        "prewarm_prebuilds_failed_total",
        # Issue 18: the version, the work queues, disruptions and refused creates.
        "prewarm_build_info",
        "prewarm_workqueue_depth",
        "prewarm_workqueue_wait_seconds_bucket",
        "prewarm_workqueue_retries_total",
        "prewarm_prebuilds_disrupted_total",
        "prewarm_workspace_creates_refused_total",
        # Issue 20: demand mode's view, next to the misses it is meant to prevent.
        "prewarm_preset_autoscale_arrivals_per_minute",
        "prewarm_preset_autoscale_build_seconds",
        "prewarm_preset_autoscale_slot_seconds",
        "prewarm_preset_autoscale_predicted_miss_ratio",
        "prewarm_claim_misses_total",
    ):
        assert metric in exprs
    (miss_panel,) = [p for p in dashboard["panels"] if "predicted_miss_ratio" in str(p)]
    assert "prewarm_claim_misses_total" in str(miss_panel)  # predicted against actual
    disrupted = [p for p in dashboard["panels"] if "prewarm_prebuilds_disrupted" in str(p)]
    assert all("reason" in t["expr"] for p in disrupted for t in p["targets"])


def exported_metric_names() -> set[str]:
    """Every series name the operator can export (from prewarm.metrics' registry)."""
    names: set[str] = {"up"}
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "gauge": ("",),
        "info": ("_info",),
    }
    for family in REGISTRY.collect():
        if family.name.startswith("prewarm_"):
            names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bprewarm_[a-z_]+\b", expr))


def test_alerts_and_dashboard_query_metrics_that_exist() -> None:
    exported = exported_metric_names()
    docs = template(**{"prometheusRule.enabled": "true", "dashboard.enabled": "true"})
    exprs = [r["expr"] for g in rule_groups(docs) for r in g["rules"]]
    dashboard = json.loads(one(docs, "ConfigMap")["data"]["prewarm.json"])
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = set().union(*(metric_names_in(e) for e in exprs))
    assert used, "no prewarm_ metric found in the queries"
    assert used <= exported, f"queries use metrics the operator does not export: {used - exported}"


# Grafana's own variables a query may use besides the dashboard's.
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range"}
PANEL_TYPES = {"timeseries", "stat", "heatmap", "gauge", "table", "bargauge", "text"}


def dashboard_json() -> dict[str, Any]:
    return dict(json.loads((CHART / "files" / "dashboards" / "prewarm.json").read_text()))


def test_dashboard_is_a_well_formed_grafana_dashboard() -> None:
    # No Grafana dashboard JSON schema is installable here (npm's @grafana/schema and
    # @grafana/grafana-foundation-sdk ship TypeScript types, PyPI's
    # grafana-foundation-sdk Python models): the structure Grafana needs, checked here.
    d = dashboard_json()
    assert d["uid"]
    assert d["title"]
    assert isinstance(d["schemaVersion"], int)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    taken: dict[tuple[int, int], str] = {}
    for p in d["panels"]:
        title, grid = p["title"], p["gridPos"]
        assert title
        assert p["type"] in PANEL_TYPES, title
        assert all(isinstance(grid[k], int) for k in "xywh"), title
        assert min(grid["x"], grid["y"]) >= 0, title
        assert min(grid["w"], grid["h"]) >= 1, title
        assert grid["x"] + grid["w"] <= 24, f"{title}: wider than Grafana's 24 columns"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{title} overlaps {taken[(x, y)]} at {(x, y)}"
                taken[(x, y)] = title
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert p["targets"], f"{title}: no query"
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
        for t in p["targets"]:
            expr = t["expr"]
            assert t["datasource"] == p["datasource"], title
            assert metric_names_in(expr), f"{title}: {expr} names no prewarm_ metric"
            for opening, closing in ("()", "{}", "[]"):
                assert expr.count(opening) == expr.count(closing), f"{title}: {expr}"
            used = set(re.findall(r"\$(\w+)", expr))
            assert used <= set(variables) | GRAFANA_VARIABLES, f"{title}: {used}"


def test_watch_namespaces_give_roles_instead_of_a_cluster_role() -> None:
    docs = template("--set", "watchNamespaces={team-a,team-b}")
    roles = find(docs, "Role", NAME)
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = find(docs, "RoleBinding", NAME)
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": NAME,
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": NAME, "namespace": "prewarm-system"}
        ]
    # The only cluster-scoped grant left to the operator is read-only discovery (the
    # claim-for-others, -edit and -view roles are for users, bound to nobody or
    # aggregated by Kubernetes into the built-in user roles).
    assert not find(docs, "ClusterRoleBinding", f"{NAME}-claim-for-others")
    (cluster_role,) = [
        r
        for r in find(docs, "ClusterRole")
        if not r["metadata"]["name"].endswith(("-edit", "-view", "-claim-for-others"))
    ]
    assert cluster_role["metadata"]["name"] == f"{NAME}-discovery"
    for rule in cluster_role["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    assert env(docs)["PREWARM_NAMESPACES"] == '["team-a","team-b"]'


def test_rbac_can_be_left_to_someone_else() -> None:
    docs = template(
        **{"rbac.create": "false", "serviceAccount.create": "false", "serviceAccount.name": "ops"}
    )
    assert not kinds(docs) & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    assert not find(docs, "ServiceAccount")
    deployment = one(docs, "Deployment", NAME)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


def test_agent_image_follows_the_operator_with_get_on_pods_in_its_namespace_only() -> None:
    # Unset (the default): no PREWARM_AGENT_IMAGE, which `kubectl set image` would leave
    # behind; the operator reads its own pod instead, with the least RBAC for that.
    docs = template("--set", "watchNamespaces={team-a}")
    assert "PREWARM_AGENT_IMAGE" not in env(docs)
    assert env(docs)["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    role = one(docs, "Role", f"{NAME}-self")
    assert role["metadata"]["namespace"] == "prewarm-system"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    binding = one(docs, "RoleBinding", f"{NAME}-self")
    assert binding["metadata"]["namespace"] == "prewarm-system"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": f"{NAME}-self",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": NAME, "namespace": "prewarm-system"}
    ]
    # Set explicitly: it wins, and the Role is not rendered.
    docs = template(**{"operator.agentImage": "mirror.local/prewarm:1"})
    assert env(docs)["PREWARM_AGENT_IMAGE"] == "mirror.local/prewarm:1"
    assert not find(docs, "Role", f"{NAME}-self")
    assert not find(docs, "RoleBinding", f"{NAME}-self")


def test_image_digest_and_verbose() -> None:
    digest = "sha256:" + "a" * 64
    c = container(template(**{"image.digest": digest, "operator.verbose": "true"}))
    assert c["image"] == f"ghcr.io/prewarm/prewarm@{digest}"
    assert c["args"] == ["run", "--verbose"]


# --- the RBAC table -------------------------------------------------------------------------


def readme_table(marker: str) -> set[tuple[str, str, str]]:
    text = (CHART / "README.md").read_text()
    block = text.split(f"<!-- {marker}:start -->")[1].split(f"<!-- {marker}:end -->")[0]
    rows: set[tuple[str, str, str]] = set()
    for line in block.strip().splitlines()[2:]:
        group, resources, verbs, why = (c.strip() for c in line.strip("|").split("|"))
        assert why, f"no reason given for {resources}"
        group = "" if group == "(core)" else group
        resources = resources.replace(" (one name)", "@one-name")
        for resource in resources.split(","):
            for verb in verbs.split(","):
                rows.add((group, resource.strip(), verb.strip()))
    return rows


def rule_rows(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    def named(rule: dict[str, Any], resource: str) -> str:
        names = rule.get("resourceNames")
        if names is None:
            return resource
        assert names == [NAME], names
        return f"{resource}@one-name"

    return {
        (group, named(rule, resource), verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_readme_lists_exactly_the_granted_rules() -> None:
    docs = template("--set", "watchNamespaces={team-a}")
    operator_rules = one(docs, "Role", NAME)["rules"]
    assert rule_rows(operator_rules) == readme_table("rbac-table")
    cluster_role = one(template(), "ClusterRole", NAME)
    assert rule_rows(cluster_role["rules"]) == readme_table("rbac-table")
    discovery = one(docs, "ClusterRole", f"{NAME}-discovery")
    assert rule_rows(discovery["rules"]) == readme_table("discovery-table")
    lease = one(docs, "Role", f"{NAME}-leader-election")
    assert lease["metadata"]["namespace"] == "prewarm-system"
    assert rule_rows(lease["rules"]) == readme_table("lease-table")
    own = one(docs, "Role", f"{NAME}-self")
    assert rule_rows(own["rules"]) == readme_table("self-table")
    for rule in [*operator_rules, *discovery["rules"], *lease["rules"], *own["rules"]]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])


# --- the claim policy (issue 16) -------------------------------------------------------------

POLICY = f"{NAME}-workspaceclaims"


def test_claim_policy_is_on_by_default_and_names_its_rules() -> None:
    docs = template()
    policy = one(docs, "ValidatingAdmissionPolicy", POLICY)
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    # CREATE and UPDATE of the claim itself only: the operator's writes go to the
    # status subresource ("workspaceclaims/status"), which this does not match.
    assert spec["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["prewarm.dev"],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["workspaceclaims"],
        }
    ]
    rules = [v["messageExpression"].split(":", 1)[0].strip("'") for v in spec["validations"]]
    assert rules == [
        "prewarm.dev/claim-owner-is-requester",
        "prewarm.dev/claim-secret-readable-by-requester",
    ]
    for validation in spec["validations"]:
        # The static message (used if the expression fails) names the rule too.
        assert validation["message"].split(":", 1)[0] in rules
        assert validation["reason"] == "Forbidden"
    variables = {v["name"]: v["expression"] for v in spec["variables"]}
    assert "check('claim-for-others')" in variables["mayClaimForOthers"]
    assert "request.userInfo.username" in spec["validations"][0]["expression"]
    assert ".resource('secrets')" in spec["validations"][1]["expression"]
    assert ".check('get')" in spec["validations"][1]["expression"]

    binding = one(docs, "ValidatingAdmissionPolicyBinding", POLICY)
    assert binding["spec"] == {"policyName": POLICY, "validationActions": ["Deny"]}
    # The custom verb the policy checks is what the shipped ClusterRole grants.
    role = one(docs, "ClusterRole", f"{NAME}-claim-for-others")
    assert role["rules"] == [
        {
            "apiGroups": ["prewarm.dev"],
            "resources": ["workspaceclaims"],
            "verbs": ["claim-for-others"],
        }
    ]
    # The operator itself is not given it.
    assert "claim-for-others" not in json.dumps(one(docs, "ClusterRole", NAME))


def test_claim_policy_binding_follows_the_watched_namespaces() -> None:
    binding = one(
        template("--set", "watchNamespaces={team-a,team-b}"),
        "ValidatingAdmissionPolicyBinding",
        POLICY,
    )
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "In",
                "values": ["team-a", "team-b"],
            }
        ]
    }


def test_claim_policy_can_be_turned_off() -> None:
    docs = template("--set", "claimPolicy.enabled=false")
    assert not kinds(docs) & {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    assert not find(docs, "ClusterRole", f"{NAME}-claim-for-others")
    # With rbac.create=false the policy stays; granting claim-for-others is left to you.
    docs = template("--set", "rbac.create=false")
    assert find(docs, "ValidatingAdmissionPolicy", POLICY)
    assert not find(docs, "ClusterRole")


def test_deploy_manifest_ships_the_claim_policy() -> None:
    docs = [d for d in yaml.safe_load_all((REPO / "deploy" / "prewarm.yaml").read_text()) if d]
    assert {d["kind"] for d in docs} >= {
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }


# --- values schema --------------------------------------------------------------------------

BAD_VALUES = [
    (["--set", "replicaCount=-1"], "/replicaCount", "minimum"),
    (
        ["--set", "replicaCount=2", "--set", "leaderElection.enabled=false"],
        "/replicaCount",
        "maximum: got 2, want 1",
    ),
    (["--set", "leaderElection.leaseSeconds=1"], "/leaderElection/leaseSeconds", "minimum"),
    (["--set", "image.repository="], "/image/repository", "minLength"),
    (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy", "must be one of"),
    (["--set", "image.digest=latest"], "/image/digest", "does not match pattern"),
    (["--set", "watchNamespaces=default"], "/watchNamespaces", "want array"),
    (["--set", "watchNamespaces={Team_A}"], "/watchNamespaces/0", "does not match pattern"),
    (["--set", "postgresql.enabled=false"], "/database/existingSecret", "minLength"),
    (["--set", "operator.logFormat=xml"], "/operator/logFormat", "must be one of"),
    (["--set", "operator.hardLimit=-1"], "/operator/hardLimit", "minimum"),
    (["--set", "operator.maxCreatesGlobal=0"], "/operator/maxCreatesGlobal", "minimum"),
    (["--set", "metrics.port=70000"], "/metrics/port", "maximum"),
    (["--set", "crds.install=yes"], "/crds/install", "want boolean"),
    (["--set", "claimPolicy.enabled=maybe"], "/claimPolicy/enabled", "want boolean"),
    (["--set", "claimPolicy.enable=false"], "additional properties 'enable' not allowed", ""),
    (["--set", "replicas=1"], "additional properties 'replicas' not allowed", ""),
    (["--set", "operator.hardlimit=2"], "additional properties 'hardlimit' not allowed", ""),
    (["--set", "serviceMonitor.interval=30"], "/serviceMonitor/interval", "want string"),
    (["--set-string", "serviceMonitor.interval=often"], "/serviceMonitor/interval", "pattern"),
    (["--set", "postgresql.persistence.size=lots"], "/postgresql/persistence/size", "pattern"),
    (["--set", "podSecurityContext.runAsUser=0"], "/podSecurityContext/runAsUser", "minimum"),
    (["--set", "podSecurityContext.runAsNonRoot=false"], "/podSecurityContext/runAsNonRoot", ""),
    (
        ["--set", "securityContext.allowPrivilegeEscalation=true"],
        "/securityContext/allowPrivilegeEscalation",
        "",
    ),
    (["--set", "resources.limits.memory=a-lot"], "/resources/limits/memory", "pattern"),
    (["--set", "postgresql.persistence.whenDeleted=Keep"], "/whenDeleted", "must be one of"),
    (["--set", "extraContainers=sidecar"], "/extraContainers", "want array"),
    (["--set", "extraVolumes[0]=ca"], "/extraVolumes/0", "want object"),
    (
        ["--set", "podDisruptionBudget.maxUnavailable=lots"],
        "/podDisruptionBudget/maxUnavailable",
        "pattern",
    ),
    (["--set", "userRoles.enabled=yes"], "/userRoles/enabled", "want boolean"),
]


@pytest.mark.parametrize(
    ("args", "where", "what"), BAD_VALUES, ids=[" ".join(a[1:]) for a, _, _ in BAD_VALUES]
)
def test_schema_rejects_bad_values_with_a_clear_message(
    args: list[str], where: str, what: str
) -> None:
    error = template_error(*args)
    assert "values don't meet the specifications of the schema" in error
    assert where in error, error
    assert what in error, error


def test_schema_accepts_the_shipped_profiles() -> None:
    assert template("-f", str(CHART / "values-production.yaml"))
    assert template(**{"replicaCount": "0"})
    assert template(**{"replicaCount": "2"})


# --- values documentation -------------------------------------------------------------------


# Maps passed to Kubernetes as they are: their inner keys are not chart values.
FREE_FORM = {"resources", "podSecurityContext", "securityContext", "labels", "annotations"}


def leaf_keys(values: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        keys.add(dotted)
        if isinstance(value, dict) and value and key not in FREE_FORM:
            keys |= leaf_keys(value, dotted + ".")
    return keys


def test_every_value_is_commented_in_the_schema_and_in_the_reference() -> None:
    values_text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(values_text)
    keys = leaf_keys(values)
    declared = schema_keys()
    assert keys <= declared, f"values.yaml keys missing from values.schema.json: {keys - declared}"
    reference = (REPO / "docs" / "reference" / "helm-values.md").read_text()
    undocumented = {k for k in keys if f"`{k}`" not in reference}
    assert not undocumented, f"keys missing from docs/reference/helm-values.md: {undocumented}"
    # Every key has a comment right above it, except groups nested in a commented group
    # and the inside of maps handed to Kubernetes as they are.
    lines = values_text.splitlines()
    parents: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z_][\w-]*):(.*)$", line)
        if not m:
            continue
        indent, key = len(m.group(1)), m.group(2)
        parents = [(n, k) for n, k in parents if n < indent]
        inside_free_form = any(k in FREE_FORM for _, k in parents)
        parents.append((indent, key))
        if inside_free_form or lines[i - 1].lstrip().startswith("#"):
            continue
        nested_group = indent > 0 and not m.group(3).strip()
        assert nested_group, f"values.yaml line {i + 1} has no comment: {line}"


# --- NOTES and the kubectl manifest ---------------------------------------------------------


def test_notes_give_next_steps() -> None:
    result = helm("install", "prewarm", str(CHART), "--dry-run=client", "-n", "prewarm-system")
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "rollout status deployment/prewarm" in notes
    assert "crds/samples/preset-basic.yaml" in notes
    assert "crds/samples/workspaceclaim.yaml" in notes
    assert (REPO / "crds/samples/preset-basic.yaml").is_file()
    assert (REPO / "crds/samples/workspaceclaim.yaml").is_file()


def _normalised(text: str) -> list[Manifest]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_deploy_manifest_is_the_current_helm_template_output(tmp_path: Path) -> None:
    fresh = tmp_path / "prewarm.yaml"
    subprocess.run(
        ["sh", str(REPO / "deploy" / "generate.sh"), str(fresh)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    committed = REPO / "deploy" / "prewarm.yaml"
    assert committed.is_file(), "deploy/prewarm.yaml is missing: run `make deploy-manifests`"
    assert _normalised(committed.read_text()) == _normalised(fresh.read_text()), (
        "deploy/prewarm.yaml is stale: run `make deploy-manifests`"
    )
    # No password in the file: every render is the same, and nobody's password is public.
    assert committed.read_text() == fresh.read_text()
    assert "kind: Secret" not in committed.read_text()
    assert "create secret generic prewarm-postgresql" in committed.read_text()


def test_two_releases_shard_namespaces_without_sharing_anything() -> None:
    # docs/scaling.md: one release per shard of namespaces, CRDs from the first.
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }

    def shard(release: str, namespaces: str, crds: str) -> list[Manifest]:
        return template(
            release=release,
            **{"watchNamespaces": namespaces, "crds.install": crds},
        )

    a = shard("shard-a", "{team-a,team-b}", "true")
    b = shard("shard-b", "{team-c}", "false")
    names = [
        {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] in cluster_scoped}
        for docs in (a, b)
    ]
    assert names[0]
    assert names[1]
    assert not names[0] & names[1]
    assert not find(b, "CustomResourceDefinition")

    def operator_env(docs: list[Manifest]) -> dict[str, Any]:
        (c,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value") for e in c["env"]}

    assert operator_env(a)["PREWARM_LEASE_NAME"] != operator_env(b)["PREWARM_LEASE_NAME"]
    assert operator_env(b)["PREWARM_NAMESPACES"] == '["team-c"]'
