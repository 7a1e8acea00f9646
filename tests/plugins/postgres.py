"""The real PostgreSQL for the ledger tier: one throw-away server per test session.

`pg_dsn` is a fresh, empty database per test; `migrated_dsn` a fresh database
with every migration applied (copied from a template migrated once per session,
which is much faster than migrating each time). Both are dropped afterwards.
A session that asks for neither starts nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from prewarm.devenv.postgres import PostgresProblem, PostgresServer
from prewarm.ledger.migrate import migrate

_MIGRATED_TEMPLATE = "prewarm_migrated_template"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
    except PostgresProblem as problem:
        pytest.fail(f"cannot start PostgreSQL: {problem}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def _fresh_database(server: PostgresServer, template: str | None = None) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    server.create_database(name, template=template)
    try:
        yield server.dsn(name)
    finally:
        server.drop_database(name)


@pytest.fixture
def pg_dsn(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for this test."""
    yield from _fresh_database(pg_server)


@pytest.fixture(scope="session")
def _migrated_template(pg_server: PostgresServer) -> str:
    pg_server.create_database(_MIGRATED_TEMPLATE)
    migrate(pg_server.dsn(_MIGRATED_TEMPLATE))
    return _MIGRATED_TEMPLATE


@pytest.fixture
def migrated_dsn(pg_server: PostgresServer, _migrated_template: str) -> Iterator[str]:
    """A fresh database for this test with every migration applied."""
    yield from _fresh_database(pg_server, template=_migrated_template)
