"""Stopping the child processes the local environment, tests and benchmarks start."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop_process(
    proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM, timeout_s: float = 20
) -> None:
    """Send `sig`, wait up to `timeout_s`, then kill; nothing if it has ended already."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
