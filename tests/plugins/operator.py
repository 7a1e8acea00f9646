"""The operator as in production: `python -m prewarm run`, a separate process,
against the real control plane and a fresh PostgreSQL database per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess
from prewarm.devenv.postgres import PostgresServer


@pytest.fixture
def ledger_dsn(pg_server: PostgresServer) -> Iterator[str]:
    name = f"op_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(name)
    yield pg_server.dsn(name)
    pg_server.drop_database(name)


@pytest.fixture
def operator_factory(
    cluster: LocalCluster, ledger_dsn: str, namespace: str, tmp_path: Path
) -> Iterator[type[OperatorProcess] | object]:
    started: list[OperatorProcess] = []

    def make(**env: str) -> OperatorProcess:
        log = tmp_path / f"operator-{len(started)}.log"
        dsn = env.pop("dsn", ledger_dsn)
        op = OperatorProcess(cluster, dsn, namespace, log, **env)
        op.start()
        started.append(op)
        return op

    yield make
    for op in started:
        op.stop()


@pytest.fixture
def operator(operator_factory: object) -> OperatorProcess:
    return operator_factory()  # type: ignore[operator, no-any-return]
