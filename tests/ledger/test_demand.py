"""Demand mode's one query (Ledger.demand): a preset's claims in a window and
its recent build times, from the rows the operator records."""

from __future__ import annotations

from datetime import timedelta

from prewarm.api.claim import ClaimSource
from prewarm.ledger.models import DemandRecord
from prewarm.ledger.repository import Ledger
from tests.ledger.scenario import HASH, OLD_HASH, PRESET
from tests.ledger.support import at, run_with_ledger

OTHER = "preset-uid-2"
WINDOW = timedelta(minutes=10)  # the window ends at at(600)


async def _claim(ledger: Ledger, uid: str, preset: str, t: float, cold: bool = False) -> None:
    await ledger.record_claim_requested(uid, preset, "team-a", uid, "alice", at(t))
    source = ClaimSource.COLD if cold else ClaimSource.PREBUILT
    await ledger.record_claim_bound(uid, f"ws-{uid}", f"pw-{uid}", "alice", source, at(t + 1))


async def _build(ledger: Ledger, uid: str, t: float, took: float | None, thash: str = HASH) -> None:
    await ledger.record_build_started(PRESET, uid, f"pw-{uid}", thash, at(t))
    if took is not None:
        await ledger.record_build_succeeded(uid, at(t + took))


def test_demand_counts_the_window_and_takes_quantiles_of_the_current_template(
    migrated_dsn: str,
) -> None:
    async def scenario(ledger: Ledger) -> DemandRecord:
        await ledger.upsert_preset(PRESET, "team-a", "python", HASH, hard_limit=3)
        await ledger.upsert_preset(OTHER, "team-a", "go", HASH, hard_limit=3)
        await _claim(ledger, "before-window", PRESET, -1)  # before at(0): out
        await _claim(ledger, "early", PRESET, 10)
        await _claim(ledger, "cold", PRESET, 200, cold=True)
        await _claim(ledger, "recent-1", PRESET, 460)  # the last quarter begins at at(450)
        await _claim(ledger, "recent-2", PRESET, 599, cold=True)
        await _claim(ledger, "after-now", PRESET, 601)  # a later clock's claim: out
        await _claim(ledger, "other-preset", OTHER, 300)
        for i, took in enumerate((10, 20, 30, 40, 50)):
            await _build(ledger, f"b{i}", 100 + i, took)
        await _build(ledger, "still-building", 120, None)
        # Ready in the second it started: its Ready (whole seconds) precedes its start.
        await ledger.record_build_started(PRESET, "same-second", "pw-ss", HASH, at(90.4))
        await ledger.record_build_succeeded("same-second", at(90))
        await _build(ledger, "old-template", 130, 500, thash=OLD_HASH)
        return await ledger.demand(PRESET, HASH, window=WINDOW, now=at(600))

    demand = run_with_ledger(migrated_dsn, scenario)
    assert (demand.claims, demand.recent, demand.cold) == (4, 2, 2)
    assert demand.builds == 6  # 0, 10, 20, 30, 40, 50
    assert demand.build_p50_s == 25.0
    assert demand.build_p90_s == 45.0  # percentile_cont: 40 + 0.5 x 10


def test_demand_uses_only_the_latest_builds(migrated_dsn: str) -> None:
    async def scenario(ledger: Ledger) -> DemandRecord:
        await ledger.upsert_preset(PRESET, "team-a", "python", HASH, hard_limit=3)
        await _build(ledger, "slow-old", 0, 100)
        for i in range(3):
            await _build(ledger, f"fast-{i}", 10 + i, 5)
        return await ledger.demand(PRESET, HASH, window=WINDOW, now=at(600), builds=3)

    demand = run_with_ledger(migrated_dsn, scenario)
    assert (demand.builds, demand.build_p90_s) == (3, 5.0)


def test_demand_of_a_preset_without_rows(migrated_dsn: str) -> None:
    demand = run_with_ledger(
        migrated_dsn, lambda ledger: ledger.demand(PRESET, HASH, window=WINDOW, now=at(600))
    )
    assert demand == DemandRecord(0, 0, 0, 0, None, None)


def test_demand_measures_how_long_a_taken_slot_stays_empty(migrated_dsn: str) -> None:
    """Claim bound -> the Ready of the first build of the template started at
    or after it (its replacement): the build plus the operator's reaction."""

    async def scenario(ledger: Ledger) -> DemandRecord:
        await ledger.upsert_preset(PRESET, "team-a", "python", HASH, hard_limit=3)
        await _build(ledger, "before", 0, 5)  # started before every claim: no one's replacement
        await _claim(ledger, "a", PRESET, 10)  # bound at 11
        await _claim(ledger, "b", PRESET, 11)  # bound at 12: the same pass replaces both
        await _build(ledger, "for-a", 14, 10)  # Ready at 24: a's slot empty 13 s
        await _build(ledger, "for-b", 14.5, 10)  # (b pairs with the first after it too: 12 s)
        await _claim(ledger, "c", PRESET, 100)  # bound at 101
        await _build(ledger, "for-c-failed", 102, None)  # never Ready: not c's replacement
        await _build(ledger, "for-c", 103, 4, thash=OLD_HASH)  # another template: not either
        await _build(ledger, "for-c-ready", 104, 5)  # Ready at 109: 8 s
        await _claim(ledger, "cold", PRESET, 200, cold=True)  # took no slot: not counted
        await _claim(ledger, "d", PRESET, 300)  # replacement not Ready yet: left out
        await _build(ledger, "for-d", 302, None)
        return await ledger.demand(PRESET, HASH, window=WINDOW, now=at(600))

    demand = run_with_ledger(migrated_dsn, scenario)
    assert demand.slots == 3  # 13, 12, 8
    assert demand.slot_p90_s == 12.8  # percentile_cont: 12 + 0.8 x 1
    assert demand.build_p90_s == 10.0  # the builds alone: 5, 10, 10, 5


def test_a_slot_no_build_followed_within_a_build_time_was_not_refilled(migrated_dsn: str) -> None:
    """A claim taken while demand mode lowered the count gets no replacement:
    the next build, started for a later claim a minute on, is not its slot's
    (it made demand mode size a quiet pool of 1 for a 56 s slot: 10 warm)."""

    async def scenario(ledger: Ledger) -> DemandRecord:
        await ledger.upsert_preset(PRESET, "team-a", "python", HASH, hard_limit=3)
        await _claim(ledger, "a", PRESET, 10)  # bound at 11
        await _build(ledger, "for-a", 12, 10)  # Ready at 22: 11 s
        await _claim(ledger, "not-refilled", PRESET, 100)  # bound at 101: no build follows
        await _claim(ledger, "b", PRESET, 158)  # bound at 159
        await _build(ledger, "for-b", 160, 5)  # Ready at 165: 6 s (and 64 s after 101)
        return await ledger.demand(PRESET, HASH, window=WINDOW, now=at(600))

    demand = run_with_ledger(migrated_dsn, scenario)
    assert demand.build_p90_s == 9.5  # 5, 10
    assert demand.slots == 2  # 11 and 6; not 64
    assert demand.slot_p90_s == 10.5
