"""Which modules a fresh interpreter has loaded after some imports: the tests of
what the operator (or its API) may and may not pull in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

OPERATOR_ROOT = Path(__file__).resolve().parents[2] / "operator"


def run_fresh(code: str) -> str:
    """`code` in a new interpreter that sees only the operator's package; its
    output. A failed assertion in it fails the caller (CalledProcessError)."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(OPERATOR_ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def loaded_after(imports: str, watched: tuple[str, ...], first: str = "pass") -> list[str]:
    """Of `watched`, the modules loaded after `first` (a statement) and then
    `import {imports}` in a new interpreter. A module blocked in sys.modules
    (None) is not loaded."""
    probe = (
        f"import sys\n{first}\nimport {imports}\n"
        f"print(','.join(m for m in {watched!r} if sys.modules.get(m) is not None))"
    )
    return [m for m in run_fresh(probe).strip().split(",") if m]
