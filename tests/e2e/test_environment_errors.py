"""A broken environment stops with the failing step named, not a traceback."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_cli_prints_environment_problems_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "prewarm", "dev", "--no-operator"],
        env={**os.environ, "PREWARM_CACHE": str(tmp_path), "PYTHONPATH": str(REPO / "operator")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "make bootstrap" in result.stderr


def test_failed_go_build_names_the_failing_step(tmp_path: Path) -> None:
    versions = tmp_path / "versions.env"
    versions.write_text(
        re.sub(
            r"^ETCD_VERSION=.*$",
            "ETCD_VERSION=v3.6.999",
            (REPO / "hack" / "versions.env").read_text(),
            flags=re.MULTILINE,
        )
    )
    result = subprocess.run(
        ["bash", str(REPO / "hack" / "build-control-plane.sh"), "etcd"],
        env={
            **os.environ,
            "PREWARM_CACHE": str(tmp_path / "cache"),
            "PREWARM_VERSIONS_FILE": str(versions),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1
    assert "failed at step: go build of go.etcd.io/etcd/server/v3@v3.6.999" in result.stderr
