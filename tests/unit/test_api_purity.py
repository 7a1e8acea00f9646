"""prewarm.api imports no I/O library: planning and the agent may depend on it freely."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

OPERATOR_ROOT = Path(__file__).resolve().parents[2] / "operator"
FORBIDDEN = ("kubernetes", "kopf", "psycopg", "psycopg_pool", "aiohttp", "requests", "urllib3")


def test_importing_the_api_loads_no_io_library() -> None:
    probe = (
        "import sys, prewarm.api, prewarm.api.reasons, prewarm.api.constants\n"
        f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(OPERATOR_ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == ""
