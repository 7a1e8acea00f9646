"""Which modules a fresh interpreter has loaded after some imports: the tests of
what the operator (or its API) may and may not pull in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

OPERATOR_ROOT = Path(__file__).resolve().parents[2] / "operator"


def loaded_after(imports: str, watched: tuple[str, ...]) -> list[str]:
    """Of `watched`, the modules in sys.modules after `import {imports}` in a new
    interpreter that sees only the operator's package."""
    probe = f"import sys, {imports}\nprint(','.join(m for m in {watched!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(OPERATOR_ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return [m for m in result.stdout.strip().split(",") if m]
