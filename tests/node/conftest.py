"""The operator of the node tier: installed once with `helm install` of the chart,
from the image built by buildah, into a namespace enforcing the restricted Pod
Security Standard; it watches that namespace, where the tests put their presets.

The chart takes the path users take from a published registry: `helm package`,
`helm push` to the node's local OCI registry, `helm install oci://...`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from prewarm.devenv.node import REGISTRY
from tests.plugins.node import REPO, NodeEnv

RELEASE = "pw"
CHART = REPO / "charts" / "prewarm"
# Where `helm push` puts the chart: oci://<registry>/charts/prewarm:<version>.
CHART_REPOSITORY = f"oci://{REGISTRY}/charts"


@dataclass
class NodeOperator:
    env: NodeEnv
    namespace: str
    release: str = RELEASE
    installed: bool = True
    chart_ref: str = ""
    chart_version: str = ""
    helm_env: dict[str, str] = field(default_factory=dict)

    def uninstall(self) -> None:
        """helm uninstall and delete the namespace (its presets with it); once."""
        if not self.installed:
            return
        self.installed = False
        self.env.cluster.helm(
            "uninstall", self.release, "-n", self.namespace, "--wait", check=False
        )
        self.env.kubectl("delete", "namespace", self.namespace, "--wait=false", check=False)

    def pods(self) -> list[str]:
        out = self.env.kubectl(
            "get",
            "pods",
            "-n",
            self.namespace,
            "-l",
            "app.kubernetes.io/component=operator",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}{'\\n'}{end}",
        )
        return out.split()

    def helm_values(self, replicas: int = 1) -> list[str]:
        image = self.env.operator_image.ref
        repository, tag = image.rsplit(":", 1)
        return [
            "--set",
            f"image.repository={repository}",
            "--set",
            f"image.tag={tag}",
            "--set",
            "postgresql.enabled=false",
            "--set",
            "database.existingSecret=ledger",
            "--set-json",
            f'watchNamespaces=["{self.namespace}"]',
            "--set",
            "operator.resyncSeconds=5",
            "--set",
            "operator.logFormat=text",
            "--set",
            "leaderElection.leaseSeconds=10",
            "--set",
            f"replicaCount={replicas}",
            # The CPU is shared with other test runs: Python starts slowly.
            "--set",
            "resources.requests.cpu=10m",
            # One restart makes a crash loop (the kubelet's back-off is 10 s, 20 s, ...).
            "--set-json",
            'operator.extraEnv=[{"name": "PREWARM_CRASHLOOP_RESTARTS", "value": "1"}]',
        ]


def publish_chart(env: NodeEnv, workdir: Path) -> tuple[str, str, dict[str, str]]:
    """`helm package` and `helm push` to the node's registry (plain HTTP); the chart's
    oci:// reference, its version and the helm environment (its caches in `workdir`)."""
    helm_env = {
        "HELM_CACHE_HOME": str(workdir / "cache"),
        "HELM_CONFIG_HOME": str(workdir / "config"),
        "HELM_DATA_HOME": str(workdir / "data"),
    }
    version = str(yaml.safe_load((CHART / "Chart.yaml").read_text())["version"])
    env.cluster.helm("package", str(CHART), "-d", str(workdir), env=helm_env)
    package = workdir / f"prewarm-{version}.tgz"
    assert package.is_file(), f"helm package made no {package.name}"
    pushed = env.cluster.helm(
        "push", str(package), CHART_REPOSITORY, "--plain-http", env=helm_env, check=False
    )
    if pushed.returncode != 0:
        pytest.fail(f"helm push to {CHART_REPOSITORY} failed: {pushed.stderr}", pytrace=False)
    return f"{CHART_REPOSITORY}/prewarm", version, helm_env


@pytest.fixture(scope="session")
def node_operator(
    real_node: NodeEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeOperator]:
    ns = f"op-{uuid.uuid4().hex[:8]}"
    chart_ref, version, helm_env = publish_chart(real_node, tmp_path_factory.mktemp("chart"))
    real_node.cluster.create_namespace(ns)
    real_node.kubectl(
        "label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted", "--overwrite"
    )
    url = real_node.ledger_service(ns, f"ledger_{uuid.uuid4().hex[:8]}")
    real_node.kubectl(
        "create", "secret", "generic", "ledger", "-n", ns, f"--from-literal=url={url}"
    )
    op = NodeOperator(real_node, ns, chart_ref=chart_ref, chart_version=version, helm_env=helm_env)
    installed = real_node.cluster.helm(
        "install",
        RELEASE,
        chart_ref,
        "--version",
        version,
        "--plain-http",
        "-n",
        ns,
        *op.helm_values(),
        "--wait",
        "--timeout",
        "6m",
        check=False,
        env=helm_env,
    )
    if installed.returncode != 0:
        described = real_node.kubectl("describe", "pods", "-n", ns, check=False)
        logs = real_node.kubectl(
            "logs", "-n", ns, "-l", "app.kubernetes.io/component=operator", "--tail=50", check=False
        )
        pytest.fail(
            f"helm install failed: {installed.stderr}\n{described[-4000:]}\n{logs}", pytrace=False
        )
    try:
        yield op
    finally:
        if not real_node.stopped:
            op.uninstall()
