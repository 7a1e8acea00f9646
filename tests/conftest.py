"""Test tiers are folders: tests/unit, tests/ledger, tests/e2e, tests/chart, tests/node.

Each test gets the marker of its folder, so `pytest -m unit` (or ledger, e2e,
chart) runs one tier. The real parts (PostgreSQL, the control plane) are
session fixtures in tests/plugins/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.plugins.postgres",
    "tests.plugins.cluster",
    "tests.plugins.operator",
    "tests.plugins.node",
]

_TIERS = ("unit", "ledger", "e2e", "chart", "node")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
