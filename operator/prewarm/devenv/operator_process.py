"""The operator as a separate process, exactly as deployed (`python -m prewarm run`).

Used by the e2e tests and the benchmarks: a real process with its own event
loop, killable at any point, whose log and /metrics can be read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prewarm.devenv.cluster import LocalCluster, free_port
from prewarm.devenv.processes import stop_process

_REPO = Path(__file__).resolve().parents[3]


class OperatorProcess:
    def __init__(
        self, cluster: LocalCluster, dsn: str, namespace: str | None, log: Path, **env: str
    ) -> None:
        self.cluster = cluster
        self.dsn = dsn
        self.namespace = namespace
        self.log = log
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(_REPO / "operator"),
            "KUBECONFIG": str(cluster.kubeconfig),
            "PREWARM_DATABASE_URL": dsn,
            "PREWARM_NAMESPACES": f'["{namespace}"]' if namespace else "[]",
            "PREWARM_LOG_FORMAT": "text",
            "PREWARM_METRICS_PORT": str(self.metrics_port),
            "PREWARM_HEALTH_PORT": str(free_port()),
            "PREWARM_RESYNC_SECONDS": "1",
            "PREWARM_LEASE_NAMESPACE": namespace or "default",
            "PREWARM_LEASE_SECONDS": "4",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "prewarm", "run"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited at start:\n{self.log_text()[-3000:]}")
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()  # nothing outlives a failed start
        raise AssertionError("operator did not serve metrics within 90 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
