"""The operator of the node tier: installed once with `helm install` of the chart,
from the image built by buildah, into a namespace enforcing the restricted Pod
Security Standard; it watches that namespace, where the tests put their presets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.plugins.node import REPO, NodeEnv

RELEASE = "pw"


@dataclass
class NodeOperator:
    env: NodeEnv
    namespace: str
    release: str = RELEASE
    installed: bool = True

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


@pytest.fixture(scope="session")
def node_operator(real_node: NodeEnv) -> Iterator[NodeOperator]:
    ns = f"op-{uuid.uuid4().hex[:8]}"
    real_node.cluster.create_namespace(ns)
    real_node.kubectl(
        "label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted", "--overwrite"
    )
    url = real_node.ledger_service(ns, f"ledger_{uuid.uuid4().hex[:8]}")
    real_node.kubectl(
        "create", "secret", "generic", "ledger", "-n", ns, f"--from-literal=url={url}"
    )
    op = NodeOperator(real_node, ns)
    installed = real_node.cluster.helm(
        "install",
        RELEASE,
        str(REPO / "charts" / "prewarm"),
        "-n",
        ns,
        *op.helm_values(),
        "--wait",
        "--timeout",
        "6m",
        check=False,
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
