"""The bundled PostgreSQL's password on the real local API server: generated once by
`helm install`, the same after every upgrade and after uninstall + install (the data
PVC outlives the release and only opens with it); a Secret made by hand (the
deploy/prewarm.yaml path) wins over the chart and is never touched by it."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid

from tests.chart.support import CHART, REPO, kget
from tests.chart.test_install import helm_install, new_namespace, prebound_volume

from prewarm.devenv.cluster import LocalCluster


def password(cluster: LocalCluster, namespace: str, name: str) -> str:
    secret = kget(cluster, "secret", "-n", namespace, name)
    return base64.b64decode(secret["data"]["password"]).decode()


def upgrade(cluster: LocalCluster, release: str, namespace: str, *args: str) -> None:
    result = cluster.helm(
        "upgrade", release, str(CHART), "-n", namespace, "--wait=watcher", *args, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_password_survives_upgrades_and_a_reinstall(cluster: LocalCluster) -> None:
    release = f"pw{uuid.uuid4().hex[:6]}"
    ns = new_namespace(cluster, "pw-pass")
    secret = f"{release}-prewarm-postgresql"
    volume = prebound_volume(cluster, ns, f"data-{secret}-0")
    try:
        helm_install(cluster, release, ns)
        first = password(cluster, ns, secret)
        assert re.fullmatch(r"[A-Za-z0-9]{32}", first)
        meta = kget(cluster, "secret", "-n", ns, secret)["metadata"]
        assert meta["annotations"]["helm.sh/resource-policy"] == "keep"

        # An upgrade without --reuse-values renders the chart afresh: same password.
        upgrade(cluster, release, ns, "--set", "operator.hardLimit=5")
        assert password(cluster, ns, secret) == first
        upgrade(cluster, release, ns, "--reuse-values", "--set", "operator.hardLimit=6")
        assert password(cluster, ns, secret) == first

        # Uninstall keeps it (with the PVC); installing again under the same name takes
        # it back instead of generating a new one that the old data would refuse.
        result = cluster.helm("uninstall", release, "-n", ns, "--wait", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert password(cluster, ns, secret) == first
        helm_install(cluster, release, ns)
        assert password(cluster, ns, secret) == first
        manifest = cluster.helm("get", "manifest", release, "-n", ns).stdout
        assert f"name: {secret}" in manifest
    finally:
        cluster.helm("uninstall", release, "-n", ns, "--wait", check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", volume, "--wait=false", check=False)


def test_a_secret_created_by_hand_wins_and_is_left_alone(cluster: LocalCluster) -> None:
    """The deploy/prewarm.yaml path: its header's command creates the Secret; a later
    `helm install` of the same names neither renders nor changes it."""
    ns = new_namespace(cluster, "pw-hand")
    release = "prewarm"
    header = (REPO / "deploy" / "prewarm.yaml").read_text().split("\n---", 1)[0]
    lines = [line.removeprefix("#").strip() for line in header.splitlines()]
    start = next(i for i, line in enumerate(lines) if "create secret generic" in line)
    command = lines[start].removesuffix("\\") + " " + lines[start + 1]
    command = command.replace("-n prewarm-system", f"-n {ns}").replace(
        "kubectl ", f"{cluster.binaries.kubectl} --kubeconfig {cluster.kubeconfig} ", 1
    )
    volume = prebound_volume(cluster, ns, "data-prewarm-postgresql-0")
    try:
        # The header's command, run by a shell as the user would.
        subprocess.run(["bash", "-c", command], check=True, capture_output=True, timeout=60)
        by_hand = password(cluster, ns, "prewarm-postgresql")
        assert re.fullmatch(r"[A-Za-z0-9]{32}", by_hand)

        helm_install(cluster, release, ns)
        assert password(cluster, ns, "prewarm-postgresql") == by_hand
        manifest = cluster.helm("get", "manifest", release, "-n", ns).stdout
        assert "kind: Secret" not in manifest
        upgrade(cluster, release, ns, "--set", "operator.hardLimit=5")
        assert password(cluster, ns, "prewarm-postgresql") == by_hand
        meta = kget(cluster, "secret", "-n", ns, "prewarm-postgresql")["metadata"]
        assert "meta.helm.sh/release-name" not in (meta.get("annotations") or {})
        sts = kget(cluster, "statefulset", "-n", ns, "prewarm-postgresql")
        (pg,) = sts["spec"]["template"]["spec"]["containers"]
        refs = [e["valueFrom"]["secretKeyRef"] for e in pg["env"] if "valueFrom" in e]
        assert refs == [{"name": "prewarm-postgresql", "key": "password"}], json.dumps(refs)
    finally:
        cluster.helm("uninstall", release, "-n", ns, "--wait", check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", volume, "--wait=false", check=False)
