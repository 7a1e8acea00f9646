"""Upgrading the chart from one version to the next: whatever Kubernetes refuses to change
in place (a StatefulSet's volumeClaimTemplates, selectors) must render the same in both.

The node tier does the real thing (tests/node/test_upgrade.py): install, write ledger
rows, `helm upgrade` to the next version, rows still there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from tests.chart.support import CHART, Manifest, bumped_chart, helm, one


def render(chart: Path, *extra: str) -> list[Manifest]:
    out = helm("template", "prewarm", str(chart), "--namespace", "prewarm-system", *extra)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def immutable(docs: list[Manifest]) -> dict[str, Any]:
    """The fields `helm upgrade` cannot patch: the StatefulSet's claim templates, selector
    and service name, and the Deployment's selector."""
    pg = one(docs, "StatefulSet")["spec"]
    return {
        "volumeClaimTemplates": pg["volumeClaimTemplates"],
        "statefulset.selector": pg["selector"],
        "serviceName": pg["serviceName"],
        "deployment.selector": one(docs, "Deployment")["spec"]["selector"],
    }


def test_next_chart_version_keeps_what_kubernetes_cannot_change(tmp_path: Path) -> None:
    now = render(CHART)
    nxt = render(bumped_chart(tmp_path))
    # The bump is visible in the labels that may change...
    labels_now = one(now, "StatefulSet")["metadata"]["labels"]
    labels_next = one(nxt, "StatefulSet")["metadata"]["labels"]
    assert labels_now["helm.sh/chart"] != labels_next["helm.sh/chart"]
    assert labels_now["app.kubernetes.io/version"] != labels_next["app.kubernetes.io/version"]
    # ...and none of it reaches the immutable fields.
    assert immutable(now) == immutable(nxt)
    (claim,) = immutable(now)["volumeClaimTemplates"]
    labels = claim["metadata"]["labels"]
    assert "helm.sh/chart" not in labels
    assert "app.kubernetes.io/version" not in labels
    assert labels["app.kubernetes.io/instance"] == "prewarm"
    assert labels["app.kubernetes.io/component"] == "postgresql"


def test_values_that_change_the_claim_templates_are_only_the_storage_ones(
    tmp_path: Path,
) -> None:
    """Any other value (images, resources, the operator's settings) leaves them alone."""
    base = immutable(render(CHART))["volumeClaimTemplates"]
    changed = render(
        bumped_chart(tmp_path),
        "--set",
        "postgresql.image.tag=17.3-bookworm",
        "--set",
        "image.tag=9.9.9",
        "--set",
        "postgresql.resources.limits.memory=2Gi",
        "--set",
        "operator.hardLimit=5",
    )
    assert immutable(changed)["volumeClaimTemplates"] == base
