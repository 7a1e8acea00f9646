"""The real control plane for the e2e and chart tiers: one per test session.

A session that selects no e2e/chart test starts nothing. The CRDs in crds/ are
installed once; every test that asks for `namespace` gets a fresh one, deleted
afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.errors import EnvironmentProblem

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    name = f"prewarm-test-{os.getpid()}"
    try:
        local = LocalCluster(name=name)
        local.start()
    except EnvironmentProblem as problem:
        pytest.fail(f"cannot start the local control plane: {problem}", pytrace=False)
    try:
        crds = sorted((REPO / "crds").glob("*.yaml"))
        if crds:
            for crd in crds:
                local.kubectl("apply", "--server-side", "-f", str(crd))
            local.kubectl(
                "wait", "--for=condition=Established", "--timeout=60s", "crd", "-l", "", "--all"
            )
        yield local
    finally:
        leftovers = local.stop()
        assert not leftovers, f"processes outlived `kwokctl delete cluster`: {leftovers}"


@pytest.fixture
def namespace(cluster: LocalCluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.create_namespace(name)
    yield name
    # Not waited for: test_control_plane proves that namespace deletion completes,
    # and waiting here would cost seconds per test.
    cluster.kubectl("delete", "namespace", name, "--wait=false")
