"""Upgrading the chart from one version to the next: whatever Kubernetes refuses to change
in place (a StatefulSet's volumeClaimTemplates, selectors) must render the same in both.

The node tier does the real thing (tests/node/test_upgrade.py): install, write ledger
rows, `helm upgrade` to the next version, rows still there."""

from __future__ import annotations

import io
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

import yaml
from tests.chart.support import CHART, REPO, Manifest, bumped_chart, helm, kget, one
from tests.chart.test_install import new_namespace, prebound_volume

from prewarm.devenv.cluster import LocalCluster


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


# --- from the previous release of the chart, on the local API server ---------------------


# The chart as released at 0.1.0: the last commit before issue 18 changed it (the chart
# was changed without a version bump since, so "the newest commit at 0.1.0" would not
# be the release). Move this to the last commit of each release when bumping the version.
PREVIOUS_RELEASE = ("0.1.0", "d4d7c62b9cba2b27107771c32e4e86c8e7b5b0bb")


def previous_chart(dest: Path) -> tuple[str, Path]:
    """The previous release's chart (and the crds/ its files/crds symlink pointed at),
    extracted from git."""
    version, commit = PREVIOUS_RELEASE
    meta = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{commit}:charts/prewarm/Chart.yaml"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert yaml.safe_load(meta)["version"] == version
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "charts/prewarm", "crds"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="tar")
    return version, dest / "charts" / "prewarm"


def test_upgrade_from_the_previous_chart_version_as_the_guide_says(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """docs/upgrading.md: from 0.1.0 the bundled PostgreSQL's StatefulSet must be deleted
    with --cascade=orphan once (its claim template's labels change); then
    --reset-then-reuse-values keeps the release's values and takes the new defaults,
    and plain --reuse-values works too (the templates tolerate missing new keys)."""
    version, old = previous_chart(tmp_path / "old")
    guide = (REPO / "docs" / "upgrading.md").read_text()
    assert f"From {version}" in guide
    release = f"pw{uuid.uuid4().hex[:6]}"
    ns = new_namespace(cluster, "pw-upg")
    sts = f"{release}-prewarm-postgresql"
    volume = prebound_volume(cluster, ns, f"data-{sts}-0")
    try:
        result = cluster.helm(
            "install", release, str(old), "-n", ns, "--take-ownership", "--wait=watcher",
            "--timeout=3m", "--set", "operator.hardLimit=7",
            # The CRDs are the session's (this commit's): an older chart must not
            # downgrade them under the other tests, nor fight kubectl's ownership.
            "--set", "crds.install=false", check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        pvc_uid = kget(cluster, "pvc", "-n", ns, f"data-{sts}-0")["metadata"]["uid"]

        def upgrade(*flags: str) -> subprocess.CompletedProcess[str]:
            return cluster.helm(
                "upgrade", release, str(CHART), "-n", ns, "--wait=watcher", "--timeout=3m",
                *flags, check=False,
            )  # fmt: skip

        if "--cascade=orphan" in guide:
            refused = upgrade("--reset-then-reuse-values")
            assert refused.returncode != 0
            assert "Forbidden" in refused.stderr, refused.stderr
            step = "delete statefulset FULLNAME-postgresql --cascade=orphan"
            assert step in guide
            cluster.kubectl("-n", ns, "delete", "statefulset", sts, "--cascade=orphan")
        result = upgrade("--reset-then-reuse-values")
        assert result.returncode == 0, result.stdout + result.stderr
        result = upgrade("--reuse-values")
        assert result.returncode == 0, result.stdout + result.stderr
        new_sts = kget(cluster, "statefulset", "-n", ns, sts)
        current = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
        assert new_sts["metadata"]["labels"]["helm.sh/chart"] == f"prewarm-{current}"
        assert kget(cluster, "pvc", "-n", ns, f"data-{sts}-0")["metadata"]["uid"] == pvc_uid
        deployment = kget(cluster, "deployment", "-n", ns, f"{release}-prewarm")
        (operator,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in operator["env"]}
        assert env["PREWARM_HARD_LIMIT"] == "7"
        # New defaults arrived with the upgrade (the user roles).
        kget(cluster, "clusterrole", f"{release}-prewarm-edit")
    finally:
        cluster.helm("uninstall", release, "-n", ns, "--wait", check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", volume, "--wait=false", check=False)
