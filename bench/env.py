"""The system under benchmark: the same real parts as the e2e tests."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prewarm.devenv.cluster import LocalCluster, pinned_versions
from prewarm.devenv.operator_process import OperatorProcess
from prewarm.devenv.postgres import PostgresServer


@dataclass
class BenchEnv:
    cluster: LocalCluster
    pg: PostgresServer
    workdir: Path

    def namespace(self, name: str) -> str:
        self.cluster.create_namespace(name)
        return name

    def operator(self, namespace: str | None, **env: str) -> OperatorProcess:
        db = f"bench_{abs(hash((namespace, len(os.listdir(self.workdir))))) % 10**8}"
        self.pg.create_database(db)
        op = OperatorProcess(
            self.cluster,
            self.pg.dsn(db),
            namespace,
            self.workdir / f"operator-{db}.log",
            PREWARM_LOG_FORMAT="json",
            **env,
        )
        op.start()
        return op


@contextlib.contextmanager
def bench_env() -> Iterator[BenchEnv]:
    with (
        tempfile.TemporaryDirectory(prefix="prewarm-bench-") as tmp,
        PostgresServer() as pg,
        LocalCluster(name=f"prewarm-bench-{os.getpid()}") as cluster,
    ):
        for crd in sorted((Path(__file__).resolve().parents[1] / "crds").glob("*.yaml")):
            cluster.kubectl("apply", "--server-side", "-f", str(crd))
        cluster.kubectl("wait", "--for=condition=Established", "--all", "crd")
        # In-process clients (Kube.connect) read KUBECONFIG; without it they read
        # ~/.kube/config, whose current context kwokctl points at whichever
        # cluster was created last on this machine, possibly someone else's.
        previous = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        try:
            yield BenchEnv(cluster, pg, Path(tmp))
        finally:
            if previous is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = previous


def machine_line() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    v = pinned_versions()
    kopf = subprocess.run(
        [sys.executable, "-c", "import kopf;print(kopf.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return (
        f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}, kube-apiserver {v['KUBE_VERSION']}, "
        f"kwok {v['KWOK_VERSION']}, kopf {kopf or '?'}"
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
