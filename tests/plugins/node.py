"""The real node for the node tier (tests/node): one per test session.

A network namespace of the run's own, the local control plane inside it (no kwok
nodes: every pod lands on the real node), a PostgreSQL server listening on the
node address, and a real kubelet + containerd + kube-proxy. The images (operator,
busybox for workspaces and pod sandboxes) are built by
hack/build-node-images.sh, cached by content, and imported into containerd.

A session that selects no node test starts nothing. `tests/node/test_zz_teardown.py`
stops it last and checks that nothing is left.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.errors import EnvironmentProblem
from prewarm.devenv.node import (
    NODE_IP,
    NODE_NAME,
    POD_CIDR,
    NetNamespace,
    NodeImage,
    RealNode,
    build_images,
)
from prewarm.devenv.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[2]


@dataclass
class NodeEnv:
    """Everything of the real node, and a way to take it down exactly once."""

    netns: NetNamespace
    cluster: LocalCluster
    pg: PostgresServer
    node: RealNode
    images: dict[str, NodeImage]
    stopped: bool = False
    leftovers: list[str] = field(default_factory=list)

    @property
    def operator_image(self) -> NodeImage:
        return self.images["prewarm"]

    @property
    def busybox_image(self) -> str:
        return self.images["busybox"].ref

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.cluster.kubectl(*args, input=input, check=check, timeout=180).stdout

    def apply(self, namespace: str, obj: dict[str, object]) -> None:
        self.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))

    def ledger_service(self, namespace: str, database: str) -> str:
        """A Service `ledger` in `namespace` whose endpoint is the PostgreSQL server
        on the node address; returns the libpq URL pods use (by ClusterIP: the
        cluster has no DNS)."""
        self.pg.create_database(database)
        self.apply(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "ledger"},
                "spec": {"ports": [{"name": "pg", "port": 5432, "targetPort": self.pg.port}]},
            },
        )
        self.apply(
            namespace,
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "ledger-node",
                    "labels": {"kubernetes.io/service-name": "ledger"},
                },
                "addressType": "IPv4",
                "ports": [{"name": "pg", "port": self.pg.port, "protocol": "TCP"}],
                "endpoints": [{"addresses": [NODE_IP]}],
            },
        )
        ip = self.kubectl(
            "get", "-n", namespace, "service", "ledger", "-o", "jsonpath={.spec.clusterIP}"
        )
        return f"postgresql://postgres@{ip}:5432/{database}"

    def stop(self) -> list[str]:
        if self.stopped:
            return self.leftovers
        self.stopped = True
        try:
            self.node.stop()
        finally:
            self.pg.stop()
            self.cluster.stop()
            self.netns.delete()
        self.leftovers = self.node.leftovers()
        if self.netns.exists():
            self.leftovers.append(f"network namespace {self.netns.name}")
        return self.leftovers


def start_node_env() -> NodeEnv:
    images = build_images(REPO)
    netns = NetNamespace(f"prewarm-node-{os.getpid()}-{uuid.uuid4().hex[:4]}")
    cluster = LocalCluster(
        name=f"prewarm-node-{os.getpid()}", netns=netns.path, advertise_address=NODE_IP, nodes=0
    )
    pg = PostgresServer(netns=netns.path, extra_listen=NODE_IP, trusted_net=POD_CIDR)
    node = RealNode(cluster=cluster, netns=netns, images=images)
    env = NodeEnv(netns=netns, cluster=cluster, pg=pg, node=node, images=images)
    try:
        netns.create()
        cluster.start()
        pg.start()
        node.start()
    except BaseException:
        env.stop()
        raise
    return env


@pytest.fixture(scope="session")
def real_node() -> Iterator[NodeEnv]:
    try:
        env = start_node_env()
    except EnvironmentProblem as problem:
        pytest.fail(f"cannot start the real node: {problem}", pytrace=False)
    try:
        yield env
    finally:
        leftovers = env.stop()
        assert not leftovers, f"the real node left behind: {leftovers}"


@pytest.fixture
def node_namespace(real_node: NodeEnv) -> Iterator[str]:
    """A fresh namespace enforcing the restricted Pod Security Standard."""
    name = f"n-{uuid.uuid4().hex[:10]}"
    real_node.cluster.create_namespace(name)
    real_node.kubectl(
        "label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted", "--overwrite"
    )
    yield name
    real_node.kubectl("delete", "namespace", name, "--wait=false", check=False)


__all__ = ["NODE_NAME", "NodeEnv", "node_namespace", "real_node"]
