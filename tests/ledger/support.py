"""Helpers for the ledger tier: run async code against a Ledger, read tables back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg

from prewarm.ledger.repository import Ledger

T = TypeVar("T")

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

LEDGER_TABLES = ("presets", "builds", "claims", "hard_limit_notifications")

# Wall-clock bookkeeping columns: they record when a write happened, not what it said
# (template_since too, when the upsert is not given the time of the switch).
_WALL_CLOCK = {"created_at", "updated_at", "template_since"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run_with_ledger(dsn: str, scenario: Callable[[Ledger], Awaitable[T]]) -> T:
    async def main() -> T:
        ledger = await Ledger.connect(dsn, max_size=4)
        async with ledger:
            return await scenario(ledger)

    return asyncio.run(main())


def dump(dsn: str) -> dict[str, list[dict[str, Any]]]:
    """Every ledger table's rows (sorted, without wall-clock columns), for equality checks."""
    tables: dict[str, list[dict[str, Any]]] = {}
    with psycopg.connect(dsn) as conn:
        for table in LEDGER_TABLES:
            rows = conn.execute(f"SELECT to_jsonb(t) FROM {table} t").fetchall()
            cleaned = [{k: v for k, v in row[0].items() if k not in _WALL_CLOCK} for row in rows]
            tables[table] = sorted(cleaned, key=repr)
    return tables


def truncate(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(f"TRUNCATE {', '.join(LEDGER_TABLES)}")
