"""`prewarm dev` (what `make dev` runs): up with a sample preset, and Ctrl-C
stops everything it started."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.support import port_left_in_time_wait

from prewarm.devenv.cluster import free_port

REPO = Path(__file__).resolve().parents[2]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _sigint_as_a_terminal_sends_it() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_dev(port: int, state: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """`prewarm dev` on `port`, read until it says it is up (or ends)."""
    env = {
        **os.environ,
        "PREWARM_DEV_STATE": str(state),
        "PYTHONPATH": str(REPO / "operator"),
        "PREWARM_DEV_APISERVER_PORT": str(port),
        "PREWARM_METRICS_PORT": str(free_port()),
        "PREWARM_HEALTH_PORT": str(free_port()),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "prewarm", "dev", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # The test stops it as a user would, with Ctrl-C (SIGINT). A test run
        # started in the background of a non-interactive shell (`cmd &`, nohup)
        # inherits SIGINT ignored, and so would `prewarm dev`: Python then
        # raises no KeyboardInterrupt and the stop waited out its 120 s.
        preexec_fn=_sigint_as_a_terminal_sends_it,
    )
    out = ""
    assert proc.stdout is not None
    deadline = time.monotonic() + 240
    while "Ctrl-C stops everything" not in out and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        out += line
    return proc, out


def _ctrl_c(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    return rest or ""


def _readme_quickstart() -> list[str]:
    """The README's quickstart commands after `make dev`, verbatim."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quickstart on the local control plane", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0].startswith("make dev"), lines
    return lines[1:]


def _run_readme_quickstart(state: Path) -> subprocess.CompletedProcess[str]:
    """In a checkout whose `.dev` is this run's state, in a shell that has no
    kubectl, no venv and no KUBECONFIG: what a fresh machine has."""
    checkout = state / "checkout"
    checkout.mkdir()
    (checkout / ".dev").symlink_to(state)
    script = "set -euo pipefail\n" + "\n".join(_readme_quickstart())
    # PATH is an empty directory: kubectl and prewarm must come from .dev/env.
    empty = state / "empty-bin"
    empty.mkdir()
    bare = {"PATH": str(empty), "HOME": str(state), "LANG": "C.UTF-8"}
    return subprocess.run(
        ["/bin/bash", "-c", script],
        cwd=checkout,
        env=bare,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_dev_comes_up_serves_the_sample_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    proc, out = _start_dev(port, tmp_path)
    try:
        assert "prewarm dev is up" in out, out
        ledger_port = int(re.search(r"ledger\s+: postgresql://[^:]+:(\d+)/", out).group(1))  # type: ignore[union-attr]
        kubeconfig = tmp_path / "kubeconfig"
        kubectl = re.search(r"kubectl\s+: (\S+)", out).group(1)  # type: ignore[union-attr]
        ready = ""
        deadline = time.monotonic() + 90
        while ready != "3" and time.monotonic() < deadline:
            ready = subprocess.run(
                [
                    kubectl,
                    "--kubeconfig",
                    str(kubeconfig),
                    "get",
                    "preset",
                    "basic",
                    "-n",
                    "default",
                    "-o",
                    "jsonpath={.status.ready}",
                ],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            time.sleep(0.5)
        assert ready == "3", "the sample preset's pool is warm"
        quickstart = _run_readme_quickstart(tmp_path)
        assert quickstart.returncode == 0, quickstart.stdout + quickstart.stderr
        assert "Bound: workspace basic-" in quickstart.stdout
        assert "(prebuilt)" in quickstart.stdout
    finally:
        out += _ctrl_c(proc)
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    # Issue 12 item 9: the operator starts once the API server serves our
    # resources, so nothing had to be retried.
    assert "storage is (re)initializing" not in out, out[-3000:]
    assert not _listening(port), "kube-apiserver still listening"
    assert not _listening(ledger_port), "PostgreSQL still listening"
    leftovers = subprocess.run(
        ["pgrep", "-af", f"secure-port={port}"], capture_output=True, text=True, check=False
    ).stdout
    assert leftovers.strip() == "", leftovers


def test_item9_dev_comes_up_on_a_port_where_only_time_wait_sockets_remain(
    tmp_path: Path,
) -> None:
    """Right after Ctrl-C of `make dev`, the API server's closed connections
    linger in TIME_WAIT on its port; they must not stop the next start
    (issue 12, item 9): kube-apiserver listens there anyway."""
    port = port_left_in_time_wait()
    proc, out = _start_dev(port, tmp_path, "--no-operator")
    try:
        assert "prewarm dev is up" in out, out
    finally:
        out += _ctrl_c(proc)
    assert proc.returncode == 0, out[-3000:]
