"""`helm upgrade` to the next chart version on the real node, with the bundled
PostgreSQL: install the chart as it is (version N), let the operator write ledger
rows (a preset's builds), upgrade to a copy bumped to N+1, and the rows are still
there, on the same PersistentVolumeClaim, read by the new PostgreSQL pod. Then the
runbook's "Rotate the bundled PostgreSQL's password" block, verbatim but for the
namespace: the operator comes back Ready with the new password, and the runbook's
Lease command names it as the holder.

The PostgreSQL image is the node tier's stand-in for docker.io/library/postgres
(hack/node-images/postgres.Dockerfile); the volume a hostPath PersistentVolume
bound in advance to the StatefulSet's claim (there is no storage provisioner).
The release watches only its own namespace, so it never meets the tier's other
operator, whose release owns the CRDs."""

from __future__ import annotations

import base64
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.chart.support import bumped_chart
from tests.node.conftest import NodeOperator
from tests.node.support import (
    get,
    preset,
    preset_status,
    ready_pods,
    wait_until,
    workspace_container,
)
from tests.plugins.node import REPO, NodeEnv

# The release name of the docs (docs/runbook.md), so their commands run verbatim.
RELEASE = "prewarm"
FULLNAME = "prewarm"  # a release named like the chart: no "<release>-prewarm" prefix
PG_POD = f"{FULLNAME}-postgresql-0"


def _helm(env: NodeEnv, *args: str) -> None:
    # Within the 300 s that LocalCluster.helm allows a command.
    result = env.cluster.helm(*args, "--wait", "--timeout", "280s", check=False)
    if result.returncode != 0:
        ns = args[args.index("-n") + 1]
        described = env.kubectl("describe", "pods", "-n", ns, check=False)
        raise AssertionError(f"helm {args[0]} failed: {result.stderr}\n{described[-4000:]}")


def _sql(env: NodeEnv, namespace: str, query: str) -> list[str]:
    """A query in the bundled PostgreSQL, as its own user, over its loopback address."""
    script = (
        'PGPASSWORD="$POSTGRES_PASSWORD" psql -h 127.0.0.1 -U "$POSTGRES_USER" '
        f'-d "$POSTGRES_DB" -At -c "{query}"'
    )
    out = env.kubectl("exec", "-n", namespace, PG_POD, "-c", "postgresql", "--", "sh", "-c", script)
    return out.split()


def _runbook_block(heading: str) -> str:
    text = (REPO / "docs" / "runbook.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    return str(block)


@pytest.mark.timeout(1500)
def test_helm_upgrade_to_the_next_chart_version_keeps_the_ledger(
    node_operator: NodeOperator, node_namespace: str, tmp_path: Path
) -> None:
    # The tier's operator release owns the CRDs (it installs them); this release leaves
    # them alone (crds.install=false), so it never takes them from it.
    env, ns = node_operator.env, node_namespace
    claim = f"data-{PG_POD}"
    pv = f"pv-{uuid.uuid4().hex[:8]}"
    volume = env.node.host_path_volume(pv)
    env.kubectl(
        "apply",
        "-f",
        "-",
        input=(
            f"apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {pv}}}\n"
            "spec:\n  capacity: {storage: 8Gi}\n  accessModes: [ReadWriteOnce]\n"
            "  persistentVolumeReclaimPolicy: Retain\n"
            f"  hostPath: {{path: '{volume}', type: Directory}}\n"
            f"  claimRef: {{namespace: {ns}, name: {claim}}}\n"
        ),
    )
    op_repo, op_tag = env.operator_image.ref.rsplit(":", 1)
    pg_repo, pg_tag = env.images["postgres"].ref.rsplit(":", 1)
    values = [
        *("--set", f"image.repository={op_repo}", "--set", f"image.tag={op_tag}"),
        *("--set", f"postgresql.image.repository={pg_repo}"),
        *("--set", f"postgresql.image.tag={pg_tag}"),
        *("--set-json", f'watchNamespaces=["{ns}"]'),
        *("--set", "operator.resyncSeconds=5", "--set", "operator.logFormat=text"),
        # The CPU is shared with other test runs.
        *("--set", "resources.requests.cpu=10m"),
        *("--set", "postgresql.resources.requests.cpu=10m"),
    ]
    try:
        # Version N: the chart as it is.
        _helm(env, "install", RELEASE, str(REPO / "charts" / "prewarm"), "-n", ns,
              "--set", "crds.install=false", *values)  # fmt: skip
        env.apply(ns, preset("kept", 1, workspace_container(env.busybox_image)))
        wait_until(
            lambda: preset_status(env, ns, "kept").get("ready") == 1,
            timeout=300,
            what="the preset's workspace Ready (its build in the ledger)",
        )
        before = wait_until(
            lambda: _sql(env, ns, "SELECT workspace_uid FROM builds WHERE ready_at IS NOT NULL"),
            timeout=120,
            what="a finished build in the ledger",
        )
        pvc_uid = get(env, ns, "pvc", claim)["metadata"]["uid"]
        old_pod_uid = get(env, ns, "pod", PG_POD)["metadata"]["uid"]

        # Version N+1: the same values, a chart whose version and appVersion moved on
        # (labels of every object change, so the PostgreSQL pod is replaced).
        nxt = bumped_chart(tmp_path)
        _helm(env, "upgrade", RELEASE, str(nxt), "-n", ns, "--reset-then-reuse-values")
        sts = get(env, ns, "statefulset", f"{FULLNAME}-postgresql")
        assert sts["metadata"]["labels"]["helm.sh/chart"] != "prewarm-" + str(
            (REPO / "charts/prewarm/Chart.yaml").read_text().split("\nversion: ")[1].split()[0]
        )
        env.cluster.kubectl(
            "rollout", "status", "-n", ns, f"statefulset/{FULLNAME}-postgresql",
            "--timeout=300s", timeout=330,
        )  # fmt: skip
        wait_until(
            lambda: ready_pods(env, ns, "app.kubernetes.io/component=postgresql"),
            timeout=300,
            what="the new PostgreSQL pod Ready",
        )
        assert get(env, ns, "pod", PG_POD)["metadata"]["uid"] != old_pod_uid
        assert get(env, ns, "pvc", claim)["metadata"]["uid"] == pvc_uid
        after = _sql(env, ns, "SELECT workspace_uid FROM builds")
        assert set(before) <= set(after), (before, after)
        env.cluster.kubectl(
            "rollout", "status", "-n", ns, f"deployment/{FULLNAME}", "--timeout=300s",
            timeout=330,
        )  # fmt: skip
        assert ready_pods(env, ns, "app.kubernetes.io/component=operator")

        # Rotate the password on purpose, as the runbook says (kubectl of the node's
        # cluster, inside its network namespace).
        secret = f"{FULLNAME}-postgresql"
        old_password = get(env, ns, "secret", secret)["data"]["password"]
        script = _runbook_block("Rotate the bundled PostgreSQL's password").replace(
            "prewarm-system", ns
        )
        kubectl = " ".join(env.cluster.wrap([str(env.cluster.binaries.kubectl)]))
        kubectl += f" --kubeconfig {env.cluster.kubeconfig}"
        script = re.sub(r"(^|\| )kubectl ", lambda m: f"{m.group(1)}{kubectl} ", script, flags=re.M)
        rotated = subprocess.run(
            ["bash", "-eu", "-c", script],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        new_password = get(env, ns, "secret", secret)["data"]["password"]
        assert new_password != old_password
        env.cluster.kubectl(
            "rollout", "status", "-n", ns, f"deployment/{FULLNAME}", "--timeout=300s",
            timeout=330,
        )  # fmt: skip
        (op_pod,) = wait_until(
            lambda: ready_pods(env, ns, "app.kubernetes.io/component=operator"),
            timeout=300,
            what="the restarted operator Ready (/readyz: the ledger reachable)",
        )
        pg_env = base64.b64decode(new_password).decode()
        assert len(pg_env) == 32
        # The new password opens the database; the rows are still there.
        login = env.kubectl(
            "exec", "-n", ns, PG_POD, "-c", "postgresql", "--", "sh", "-c",
            f"PGPASSWORD={pg_env} psql -h 127.0.0.1 -U prewarm -d prewarm -At "
            "-c 'SELECT count(*) FROM builds'",
        )  # fmt: skip
        assert int(login.strip()) >= len(before)
        # The runbook's Lease command names the holder: the operator pod.
        lease = _runbook_block("Two replicas, or the operator restarts").replace(
            "prewarm-system", ns
        )
        lease = re.sub(r"^kubectl ", f"{kubectl} ", lease.strip())

        def holder() -> str:
            return subprocess.run(
                ["bash", "-c", lease], capture_output=True, text=True, timeout=60, check=True
            ).stdout.strip()

        # The restarted pod takes the Lease once the old holder's term runs out; the
        # holder is "<pod name>-<pid>" (prewarm.handlers.registrations).
        wait_until(
            lambda: re.fullmatch(re.escape(op_pod["metadata"]["name"]) + r"-\d+", holder()),
            timeout=120,
            what=f"the Lease held by {op_pod['metadata']['name']}",
        )
    finally:
        env.cluster.helm("uninstall", RELEASE, "-n", ns, "--wait", check=False)
        env.kubectl("delete", "pvc", "-n", ns, claim, "--wait=false", check=False)
        env.kubectl("delete", "pv", pv, "--wait=false", check=False)
