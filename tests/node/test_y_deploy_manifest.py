"""`kubectl apply --server-side -f deploy/prewarm.yaml`, unchanged, on the real node,
then the sample preset of the docs: the rendered chart with its defaults (its own
namespace, CRDs, cluster-wide operator, bundled PostgreSQL on a volume, reached
by its Service's DNS name) converges like the Helm install.

The images the manifest names cannot be pulled here; the node's containerd holds
ours under those names: the operator image built by buildah, a stand-in for
docker.io/library/postgres (Debian's PostgreSQL 15 with the same environment
contract, hack/node-images/postgres.Dockerfile) and the busybox image for the
sample's docker.io/library/busybox. The volume is a hostPath PersistentVolume
(there is no storage provisioner); names resolve through prewarm.devenv.node_dns.
Runs after the Helm tests, whose namespace-scoped operator it uninstalls first:
two operators must not reconcile the same presets.
"""

from __future__ import annotations

import re
import uuid

import pytest

from prewarm.devenv.node import NODE_NAME, NodeEnv
from tests.node.conftest import NodeOperator
from tests.node.support import preset_status, ready_pods, wait_until
from tests.plugins.node import REPO

MANIFEST = REPO / "deploy" / "prewarm.yaml"
SAMPLE = REPO / "crds" / "samples" / "preset-basic.yaml"


def _images(path: str) -> set[str]:
    text = (REPO / path).read_text()
    return set(re.findall(r'^\s*image:\s*"?([^"\s]+)"?\s*$', text, flags=re.M))


def _why_not_ready(env: NodeEnv) -> str:
    """What a person would look at: the operator pod's events and its /readyz
    answer, its log, the PostgreSQL pod's events."""
    ns = ["-n", "prewarm-system"]
    operator = env.kubectl("describe", "pods", *ns, "-l", "app.kubernetes.io/component=operator",
                           check=False)  # fmt: skip
    readyz = env.cluster.kubectl(
        "exec", *ns, "deployment/prewarm", "--", "python3", "-c",
        "import urllib.request as u\n"
        "try:\n print(u.urlopen('http://127.0.0.1:9090/readyz', timeout=10).read().decode())\n"
        "except Exception as e:\n print(e, getattr(e, 'read', lambda: b'')().decode())",
        check=False, timeout=60,
    )  # fmt: skip
    logs = env.kubectl("logs", *ns, "deployment/prewarm", "--tail=150", check=False)
    postgres = env.kubectl("describe", "pods", *ns, "prewarm-postgresql-0", check=False)
    return (
        f"--- operator pod\n{operator[-3000:]}\n--- /readyz\n{readyz.stdout}{readyz.stderr}\n"
        f"--- operator log\n{logs[-8000:]}\n--- postgresql pod\n{postgres[-1500:]}"
    )


# The operator retries its start-up (ledger connection) once a minute: on a busy
# machine it may need a few minutes before PostgreSQL and its Service are up.
@pytest.mark.timeout(1500)
def test_kubectl_apply_of_deploy_manifest_converges(node_operator: NodeOperator) -> None:
    env = node_operator.env
    node_operator.uninstall()
    images = _images("deploy/prewarm.yaml")
    operator_ref = next(i for i in images if "/prewarm:" in i)
    postgres_ref = next(i for i in images if "/postgres:" in i)
    (busybox_ref,) = _images("crds/samples/preset-basic.yaml")
    env.node.tag(env.operator_image.ref, operator_ref)
    env.node.tag(env.images["postgres"].ref, postgres_ref)
    env.node.tag(env.busybox_image, busybox_ref)
    volume = env.node.host_path_volume("postgresql")
    env.kubectl(
        "apply",
        "-f",
        "-",
        input=(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: prewarm-node-postgresql}\n"
            "spec:\n  capacity: {storage: 8Gi}\n  accessModes: [ReadWriteOnce]\n"
            "  persistentVolumeReclaimPolicy: Delete\n"
            f"  hostPath: {{path: '{volume}', type: Directory}}\n"
            "  claimRef: {namespace: prewarm-system, name: data-prewarm-postgresql-0}\n"
        ),
    )

    # The CRDs are still there from the Helm release (crds.keep), labelled by it:
    # taking them over needs --force-conflicts, as on any cluster that had the
    # chart installed (docs/install.md says so).
    env.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(MANIFEST))
    # The manifest carries no password: its header's command creates the Secret once.
    header = MANIFEST.read_text().split("\n---", 1)[0].replace("\\\n#", " ")
    (create,) = [
        " ".join(line.removeprefix("#").split())
        for line in header.splitlines()
        if "create secret" in line
    ]
    env.cluster.kubectl(
        "-n", "prewarm-system", "create", "secret", "generic", "prewarm-postgresql",
        "--from-literal=password=" + uuid.uuid4().hex,
    )  # fmt: skip
    assert create.startswith(
        "kubectl -n prewarm-system create secret generic prewarm-postgresql "
        "--from-literal=password="
    ), create
    for workload in ("statefulset/prewarm-postgresql", "deployment/prewarm"):
        rolled = env.cluster.kubectl(
            "rollout", "status", "-n", "prewarm-system", workload, "--timeout=600s",
            check=False, timeout=630,
        )  # fmt: skip
        if rolled.returncode != 0:
            raise AssertionError(f"{workload}: {rolled.stderr}\n{_why_not_ready(env)}")
    (operator_pod,) = ready_pods(env, "prewarm-system", "app.kubernetes.io/component=operator")
    assert operator_pod["spec"]["nodeName"] == NODE_NAME

    ns = f"d-{uuid.uuid4().hex[:8]}"
    env.cluster.create_namespace(ns)
    env.kubectl("apply", "-n", ns, "-f", str(SAMPLE))
    wait_until(
        lambda: preset_status(env, ns, "basic").get("ready") == 3,
        timeout=300,
        what="the sample preset's 3 workspaces Ready",
    )
    assert len(ready_pods(env, ns, "prewarm.dev/preset=basic")) == 3
    env.kubectl("delete", "namespace", ns, "--wait=false")
