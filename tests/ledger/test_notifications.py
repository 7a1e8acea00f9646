"""The hard-limit notification goes out once per episode, across restarts and replicas."""

from __future__ import annotations

import asyncio

from prewarm.ledger.repository import Ledger
from tests.ledger.support import at, run_with_ledger


def test_only_the_first_caller_per_episode_is_told_to_notify(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> list[bool]:
        await ledger.upsert_preset("p1", "team-a", "python", "h1")
        return [
            await ledger.mark_hard_limit_notified("p1", "h1", None),
            await ledger.mark_hard_limit_notified("p1", "h1", None),
            # A retry (new epoch) and a new spec (new hash) are new episodes.
            await ledger.mark_hard_limit_notified("p1", "h1", at(100)),
            await ledger.mark_hard_limit_notified("p1", "h2", at(100)),
            await ledger.mark_hard_limit_notified("p1", "h1", at(100)),
        ]

    assert run_with_ledger(migrated_dsn, scenario) == [True, False, True, True, False]

    async def after_restart(ledger: Ledger) -> bool:
        return await ledger.mark_hard_limit_notified("p1", "h1", None)

    assert run_with_ledger(migrated_dsn, after_restart) is False


def test_two_replicas_racing_get_exactly_one_yes(migrated_dsn: str):
    episodes = 25

    async def scenario(first: Ledger) -> list[list[bool]]:
        await first.upsert_preset("p1", "team-a", "python", "h1")
        async with await Ledger.connect(migrated_dsn) as second:
            return [
                list(
                    await asyncio.gather(
                        first.mark_hard_limit_notified("p1", "h1", at(i)),
                        second.mark_hard_limit_notified("p1", "h1", at(i)),
                    )
                )
                for i in range(episodes)
            ]

    outcomes = run_with_ledger(migrated_dsn, scenario)
    assert len(outcomes) == episodes
    assert all(sorted(pair) == [False, True] for pair in outcomes)
