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

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from prewarm.devenv.errors import EnvironmentProblem
from prewarm.devenv.node import NODE_NAME, NodeEnv, start_node_env

REPO = Path(__file__).resolve().parents[2]


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


__all__ = ["NODE_NAME", "REPO", "NodeEnv", "node_namespace", "real_node"]
