"""The house rules a reader relies on, checked on the code itself."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "prewarm"
MAX_FUNCTION_LINES = 60


def test_no_function_of_the_product_is_over_sixty_lines() -> None:
    # devenv is the developers' local environment, not shipped with the product.
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "devenv" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({lines} lines)")
    assert not too_long, "split these: " + ", ".join(too_long)
