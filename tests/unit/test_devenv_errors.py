"""A bad environment gives one clear sentence, not a traceback."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest
from tests.e2e.support import port_left_in_time_wait

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


def test_item9_a_port_with_only_time_wait_sockets_is_free() -> None:
    port = port_left_in_time_wait()
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
