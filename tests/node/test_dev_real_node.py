"""`prewarm dev --real-node`: the same environment by hand, up until Ctrl-C, and
nothing left afterwards. Slow (a second node, about two minutes): make test-full."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prewarm.devenv.node import NETNS_DIR
from prewarm.devenv.processes import stop_process
from tests.plugins.node import REPO


@pytest.mark.slow
def test_prewarm_dev_real_node_comes_up_and_leaves_nothing(tmp_path: Path) -> None:
    log = tmp_path / "dev.log"
    env = {**os.environ, "PREWARM_DEV_STATE": str(tmp_path / "state")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prewarm", "dev", "--real-node"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 900
        while "is up" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        kubectl = next(
            line.split(":", 1)[1].strip()
            for line in log.read_text().splitlines()
            if line.strip().startswith("kubectl :")
        )
        netns = next(a for a in shlex.split(kubectl) if a.startswith("--net=")).split("=", 1)[1]
        deadline = time.monotonic() + 300
        while True:
            ready = subprocess.run(
                [*shlex.split(kubectl), "get", "preset", "basic", "-n", "default",
                 "-o", "jsonpath={.status.ready}"],
                capture_output=True, text=True, check=False,
            ).stdout  # fmt: skip
            if ready == "3":
                break
            assert time.monotonic() < deadline, f"sample preset not ready: {ready!r}"
            time.sleep(2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        stop_process(proc, sig=signal.SIGINT, timeout_s=300)
    assert "left behind" not in log.read_text()
    assert not Path(netns).exists()
    assert Path(netns).parent == NETNS_DIR
