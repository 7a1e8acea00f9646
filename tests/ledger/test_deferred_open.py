"""A ledger opened while PostgreSQL is down (issue 12, item 4): the operator
starts with `Ledger.deferred` and opens it when PostgreSQL answers."""

from __future__ import annotations

import asyncio

import pytest

from prewarm.devenv.postgres import PostgresServer
from prewarm.ledger.repository import Ledger, LedgerUnavailable
from tests.ledger.support import at


def test_item4_a_deferred_ledger_is_unavailable_until_it_opens_and_migrates() -> None:
    with PostgresServer() as pg:
        pg.create_database("ledger")
        dsn = pg.dsn("ledger")
        pg.pause()

        async def while_down(ledger: Ledger) -> None:
            assert not ledger.is_open
            with pytest.raises(LedgerUnavailable):
                await ledger.upsert_preset("p-uid", "ns", "p", "h1")
            with pytest.raises(LedgerUnavailable):
                await ledger.open()
            assert not ledger.is_open

        async def once_back(ledger: Ledger) -> None:
            applied = await ledger.open()
            assert applied, "the migrations ran on open"
            assert ledger.is_open
            assert await ledger.upsert_preset("p-uid", "ns", "p", "h1")
            await ledger.record_build_started("p-uid", "w-uid", "p-1", "h1", at(0))
            assert await ledger.open() == [], "opening again changes nothing"

        async def scenario() -> None:
            ledger = Ledger.deferred(dsn)
            try:
                await while_down(ledger)
                await asyncio.to_thread(pg.resume)
                await once_back(ledger)
            finally:
                await ledger.close()

        asyncio.run(scenario())
