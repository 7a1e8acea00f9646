"""A bad environment gives one clear sentence, not a traceback."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

from prewarm.devenv.cluster import Binaries, LocalCluster, ensure_port_free
from prewarm.devenv.errors import EnvironmentProblem

REPO = Path(__file__).resolve().parents[2]


def test_port_in_use_names_the_port_and_the_setting() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(EnvironmentProblem) as problem:
            ensure_port_free(port, "kube-apiserver", "PREWARM_DEV_APISERVER_PORT")
    assert str(port) in str(problem.value)
    assert "PREWARM_DEV_APISERVER_PORT" in str(problem.value)


def test_missing_binaries_say_how_to_build_them(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentProblem) as problem:
        Binaries.from_cache(tmp_path)
    assert "make bootstrap" in str(problem.value)
    assert "kube-apiserver" in str(problem.value)


def _time_wait_port() -> int:
    """A port on which only a TIME_WAIT socket remains, as right after Ctrl-C
    of `make dev`: the side that closes a connection first keeps one. The
    server listens with SO_REUSEADDR, as kube-apiserver (Go) does."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = int(server.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server side closes first: its socket waits in TIME_WAIT
            client.recv(1)
    return port


def test_item9_a_port_with_only_time_wait_sockets_is_free() -> None:
    port = _time_wait_port()
    # kube-apiserver binds with SO_REUSEADDR, so TIME_WAIT does not stop it.
    ensure_port_free(port, "kube-apiserver", "PREWARM_DEV_APISERVER_PORT")


def test_item9_a_start_that_fails_on_the_port_leaves_no_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fake = Path("/nonexistent")
    binaries = Binaries(fake, fake, fake, fake, fake, fake, fake, fake, (), "v0")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(EnvironmentProblem), LocalCluster("t", port, binaries):
            pass
    assert list(tmp_path.iterdir()) == []
