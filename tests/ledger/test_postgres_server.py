"""The throw-away PostgreSQL server: it starts, reports problems in one line, leaves nothing."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from prewarm.devenv import postgres
from prewarm.devenv.postgres import PortInUse, PostgresProblem, PostgresServer


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    """Exists and is not a zombie (a reparented zombie may linger until init reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def test_session_server_gives_each_test_an_empty_database(pg_server: PostgresServer, pg_dsn: str):
    with psycopg.connect(pg_dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
    assert tables == (0,)
    assert pg_dsn.startswith(f"postgresql://postgres@127.0.0.1:{pg_server.port}/test_")


def test_created_database_is_dropped(pg_server: PostgresServer):
    pg_server.create_database("dropme")
    with psycopg.connect(pg_server.dsn("dropme")):
        pass
    pg_server.drop_database("dropme")
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(pg_server.dsn("dropme"))


def test_rejects_database_names_that_would_need_quoting(pg_server: PostgresServer):
    with pytest.raises(ValueError, match="not a plain database name"):
        pg_server.create_database('x"; DROP DATABASE postgres; --')


def test_everything_is_stopped_and_removed_even_when_the_body_raises():
    seen: dict[str, object] = {}

    def use_then_fail() -> None:
        with PostgresServer() as pg:
            root = pg.log_path.parent
            seen.update(
                port=pg.port,
                root=root,
                pid=int((root / "data" / "postmaster.pid").read_text().split()[0]),
                listening=_listening(pg.port),
            )
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        use_then_fail()
    assert seen["listening"] is True
    assert isinstance(seen["root"], Path)
    assert not seen["root"].exists()
    assert isinstance(seen["pid"], int)
    assert not _alive(seen["pid"])
    assert isinstance(seen["port"], int)
    assert not _listening(seen["port"])


def test_taken_port_is_a_one_line_error(pg_server: PostgresServer):
    with pytest.raises(PortInUse) as caught, PostgresServer(port=pg_server.port):
        pass
    assert str(caught.value) == f"port {pg_server.port} on 127.0.0.1 is already in use"


def test_missing_server_package_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(postgres, "_DEBIAN_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PostgresProblem) as caught, PostgresServer():
        pass
    message = str(caught.value)
    assert "apt-get install -y postgresql" in message
    assert "\n" not in message


def test_failed_start_quotes_the_server_log_and_cleans_up():
    class Misconfigured(PostgresServer):
        def _initdb(self) -> None:
            super()._initdb()
            with (self.log_path.parent / "data" / "postgresql.conf").open("a") as conf:
                conf.write("shared_buffers = 'lots'\n")

    server = Misconfigured()
    with pytest.raises(PostgresProblem) as caught, server:
        pass
    message = str(caught.value)
    assert message.startswith("PostgreSQL failed to start")
    assert 'invalid value for parameter "shared_buffers"' in message
    assert "\n" not in message
    with pytest.raises(PostgresProblem, match="not started"):
        _ = server.log_path
