"""Every write is a replay-safe upsert: twice, or out of order, the tables end up the same."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import pytest

from prewarm.api.claim import ClaimSource
from prewarm.ledger.models import BuildRecord, ClaimRecord
from prewarm.ledger.repository import Ledger
from tests.ledger.support import at, dump, run_with_ledger, truncate

Write = Callable[[Ledger], Awaitable[object]]

# Presets come first in any replay: builds reference them, and the operator
# always knows a preset before it builds for it.
PRESET_WRITES: list[Write] = [
    lambda ledger: ledger.upsert_preset("p1", "team-a", "python", "h1", generation=1),
    lambda ledger: ledger.upsert_preset("p1", "team-a", "python", "h2", generation=2),
    lambda ledger: ledger.upsert_preset("p2", "team-b", "go", "g1", generation=1),
]

EVENT_WRITES: list[Write] = [
    lambda ledger: ledger.record_retry("p1", "try-1", at(100)),
    lambda ledger: ledger.record_retry("p1", "try-2", at(200)),
    # ws-1: started, became Ready, then crash-looped: a failure after readiness.
    lambda ledger: ledger.record_build_started("p1", "ws-1", "pw-1", "h2", at(300)),
    lambda ledger: ledger.record_build_succeeded("ws-1", at(330)),
    lambda ledger: ledger.record_build_failed("ws-1", "CrashLoopBackOff", "restarts", at(400)),
    # ws-2: failed, and was reported again later with a different (derived) reason.
    lambda ledger: ledger.record_build_started("p1", "ws-2", "pw-2", "h2", at(310)),
    lambda ledger: ledger.record_build_failed("ws-2", "ImagePullBackOff", "no image", at(340)),
    lambda ledger: ledger.record_build_failed("ws-2", "Deleted", "pod gone", at(500)),
    # ws-3: a plain success; ws-4: still building; ws-5: invalid template.
    lambda ledger: ledger.record_build_started("p2", "ws-3", "pw-3", "g1", at(320)),
    lambda ledger: ledger.record_build_succeeded("ws-3", at(350)),
    lambda ledger: ledger.record_build_started("p2", "ws-4", "pw-4", "g1", at(360)),
    lambda ledger: ledger.record_build_started("p2", "ws-5", "pw-5", "g1", at(370)),
    lambda ledger: ledger.record_build_failed(
        "ws-5", "Invalid", "spec.containers: Required", at(371), validation_error=True
    ),
    # c-1: prebuilt claim, re-initialised; c-2: cold claim that failed.
    lambda ledger: ledger.record_claim_requested("c-1", "p2", "team-b", "mine", "alice", at(400)),
    lambda ledger: ledger.record_claim_bound(
        "c-1", "ws-3", "pw-3", "alice", ClaimSource.PREBUILT, at(401)
    ),
    lambda ledger: ledger.record_claim_reinitialized("c-1", at(402)),
    lambda ledger: ledger.record_claim_requested("c-2", "p1", "team-a", "theirs", "bob", at(410)),
    lambda ledger: ledger.record_claim_failed("c-2", "ColdStartFailed", at(600)),
    lambda ledger: ledger.mark_hard_limit_notified("p1", "h2", at(200), at=at(900)),
]


def _apply(dsn: str, writes: list[Write]) -> None:
    async def scenario(ledger: Ledger) -> None:
        for write in writes:
            await write(ledger)

    run_with_ledger(dsn, scenario)


def test_replaying_every_write_twice_or_shuffled_changes_nothing(migrated_dsn: str):
    _apply(migrated_dsn, PRESET_WRITES + EVENT_WRITES)
    once = dump(migrated_dsn)
    assert len(once["builds"]) == 5
    assert len(once["claims"]) == 2

    truncate(migrated_dsn)
    _apply(migrated_dsn, [w for write in PRESET_WRITES + EVENT_WRITES for w in (write, write)])
    assert dump(migrated_dsn) == once

    for seed in range(5):
        shuffle = random.Random(seed).sample
        truncate(migrated_dsn)
        presets = shuffle(PRESET_WRITES * 2, k=len(PRESET_WRITES) * 2)
        events = shuffle(EVENT_WRITES * 2, k=len(EVENT_WRITES) * 2)
        _apply(migrated_dsn, presets + events)
        assert dump(migrated_dsn) == once, f"shuffle seed {seed}"


def test_a_started_replay_after_failed_keeps_failed(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> BuildRecord:
        await ledger.upsert_preset("p1", "team-a", "python", "h1")
        await ledger.record_build_started("p1", "ws-1", "pw-1", "h1", at(0))
        await ledger.record_build_failed("ws-1", "Unschedulable", "0/3 nodes", at(30))
        await ledger.record_build_started("p1", "ws-1", "pw-1", "h1", at(0))
        await ledger.record_build_started("p1", "ws-1", "pw-1", "h1", at(60))
        [build] = await ledger.history("team-a", "python", 10)
        return build

    build = run_with_ledger(migrated_dsn, scenario)
    assert build.state == "failed"
    assert build.started_at == at(0)
    assert (build.failure_reason, build.failure_message) == ("Unschedulable", "0/3 nodes")


def test_the_earliest_failure_report_keeps_its_cause(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> BuildRecord:
        await ledger.upsert_preset("p1", "team-a", "python", "h1")
        await ledger.record_build_started("p1", "ws-1", "pw-1", "h1", at(0))
        await ledger.record_build_failed("ws-1", "Deleted", "later report", at(90))
        await ledger.record_build_failed("ws-1", "ImagePullBackOff", "first cause", at(30))
        [build] = await ledger.history("team-a", "python", 10)
        return build

    build = run_with_ledger(migrated_dsn, scenario)
    assert (build.failure_reason, build.failed_at) == ("ImagePullBackOff", at(30))


def test_an_older_preset_generation_does_not_undo_a_newer_spec(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> tuple[bool, bool, str | None]:
        await ledger.upsert_preset("p1", "team-a", "python", "h2", generation=2)
        stale = await ledger.upsert_preset("p1", "team-a", "python", "h1", generation=1)
        same = await ledger.upsert_preset("p1", "team-a", "python", "h2", generation=2)
        preset = await ledger.preset("p1")
        return stale, same, None if preset is None else preset.template_hash

    assert run_with_ledger(migrated_dsn, scenario) == (False, False, "h2")


@pytest.mark.parametrize("order", ["bound first", "requested first"])
def test_claim_events_merge_in_any_order(migrated_dsn: str, order: str):
    async def scenario(ledger: Ledger) -> ClaimRecord | None:
        requested = ledger.record_claim_requested("c-1", "p1", "team-a", "mine", "alice", at(0))
        bound = ledger.record_claim_bound("c-1", "ws-9", "pw-9", "alice", ClaimSource.COLD, at(5))
        for write in (bound, requested) if order == "bound first" else (requested, bound):
            await write
        return await ledger.claim("c-1")

    claim = run_with_ledger(migrated_dsn, scenario)
    assert claim is not None
    assert (claim.state, claim.claim_name, claim.workspace_name, claim.source) == (
        "bound",
        "mine",
        "pw-9",
        "cold",
    )
    assert (claim.requested_at, claim.bound_at) == (at(0), at(5))
