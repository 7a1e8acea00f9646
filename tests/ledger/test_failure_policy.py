"""Hard limit, consecutive failures, validation failure and backoff, computed in SQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from prewarm.ledger.models import FailureState
from prewarm.ledger.repository import Ledger
from tests.ledger.scenario import (
    HASH,
    OLD_HASH,
    PRESET,
    Build,
    building,
    failed,
    record,
    succeeded,
)
from tests.ledger.support import at, run_with_ledger

BASE = timedelta(seconds=15)
CAP = timedelta(minutes=10)
LOOKBACK = timedelta(hours=1)


def _state(
    dsn: str,
    builds: list[Build],
    *,
    hard_limit: int = 3,
    now: float = 3600.0,
    retries: tuple[tuple[str, float], ...] = (),
) -> FailureState:
    async def scenario(ledger: Ledger) -> FailureState:
        await ledger.upsert_preset(PRESET, "team-a", "python", HASH)
        await record(ledger, builds)
        for token, when in retries:
            await ledger.record_retry(PRESET, token, at(when))
        return await ledger.failure_state(
            PRESET,
            HASH,
            hard_limit=hard_limit,
            backoff_base=BASE,
            backoff_max=CAP,
            lookback=LOOKBACK,
            now=at(now),
        )

    return run_with_ledger(dsn, scenario)


# (builds, hard_limit, hard_limited, consecutive_failures)
HARD_LIMIT_CASES = {
    "no builds": ([], 3, False, 0),
    "hard limit 0 disables it": ([failed(i * 60) for i in range(5)], 0, False, 5),
    "exactly N failures": ([failed(0), failed(60), failed(120)], 3, True, 3),
    "N-1 failures": ([failed(0), failed(60)], 3, False, 2),
    "limit 1, one failure": ([failed(0)], 1, True, 1),
    "more than N failures": ([failed(i * 60) for i in range(7)], 3, True, 7),
    "a success in between resets": (
        [failed(0), failed(60), succeeded(120), failed(180), failed(240)],
        3,
        False,
        2,
    ),
    "N failures after a success": (
        [succeeded(0), failed(60), failed(120), failed(180)],
        3,
        True,
        3,
    ),
    "older template hash ignored": (
        [failed(i * 60, template_hash=OLD_HASH) for i in range(5)] + [failed(600)],
        3,
        False,
        1,
    ),
    "in-flight newest build is not a failure": (
        [failed(0), failed(60), failed(120), building(180)],
        3,
        False,
        3,
    ),
    "in-flight build inside the window": (
        [failed(0), building(60), failed(120), failed(180)],
        3,
        False,
        3,
    ),
    "order is by start time, not by finish time": (
        # The success started first but finished last: it does not break the streak.
        [succeeded(0, took=900), failed(60), failed(120), failed(180)],
        3,
        True,
        3,
    ),
}


@pytest.mark.parametrize(
    ("builds", "hard_limit", "hard_limited", "consecutive"),
    list(HARD_LIMIT_CASES.values()),
    ids=list(HARD_LIMIT_CASES),
)
def test_hard_limit(
    migrated_dsn: str, builds: list[Build], hard_limit: int, hard_limited: bool, consecutive: int
):
    state = _state(migrated_dsn, builds, hard_limit=hard_limit)
    assert state.hard_limited is hard_limited
    assert state.consecutive_failures == consecutive


def test_builds_before_a_retry_no_longer_count(migrated_dsn: str):
    three_failures = [failed(0), failed(60), failed(120)]
    state = _state(migrated_dsn, three_failures, retries=(("try-1", 300),))
    assert not state.hard_limited
    assert state.consecutive_failures == 0
    assert state.reset_at == at(300)
    assert state.last_failure is None


def test_same_retry_token_twice_does_not_reset_again(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> tuple[bool, bool, bool, FailureState]:
        await ledger.upsert_preset(PRESET, "team-a", "python", HASH)
        first = await ledger.record_retry(PRESET, "try-1", at(0))
        await record(ledger, [failed(60), failed(120), failed(180)])
        # A restart replays the annotation it still sees on the preset.
        replay = await ledger.record_retry(PRESET, "try-1", at(600))
        # An older token arriving late must not move the epoch either.
        stale = await ledger.record_retry(PRESET, "try-0", at(-60))
        state = await ledger.failure_state(
            PRESET,
            HASH,
            hard_limit=3,
            backoff_base=BASE,
            backoff_max=CAP,
            lookback=LOOKBACK,
            now=at(900),
        )
        return first, replay, stale, state

    first, replay, stale, state = run_with_ledger(migrated_dsn, scenario)
    assert (first, replay, stale) == (True, False, False)
    assert state.hard_limited
    assert state.reset_at == at(0)


def test_a_new_retry_token_resets_again(migrated_dsn: str):
    builds = [failed(0), failed(60), failed(120), failed(400), failed(460), failed(520)]
    state = _state(migrated_dsn, builds, retries=(("try-1", 300), ("try-2", 450)))
    assert state.consecutive_failures == 2
    assert not state.hard_limited


def test_validation_failure_of_the_latest_build(migrated_dsn: str):
    state = _state(
        migrated_dsn, [succeeded(0), failed(60, validation_error=True, reason="Invalid")]
    )
    assert state.validation_failed
    assert state.last_failure is not None
    assert state.last_failure.reason == "Invalid"
    assert state.last_failure.at == at(90)


def test_validation_failure_of_an_older_build_is_superseded(migrated_dsn: str):
    state = _state(migrated_dsn, [failed(0, validation_error=True), succeeded(60)])
    assert not state.validation_failed


def test_unknown_preset_has_a_clean_state(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> FailureState:
        return await ledger.failure_state(
            "nobody",
            HASH,
            hard_limit=3,
            backoff_base=BASE,
            backoff_max=CAP,
            lookback=LOOKBACK,
            now=at(0),
        )

    state = run_with_ledger(migrated_dsn, scenario)
    assert state == FailureState.clean("nobody", HASH, 3)


# Failures end 30 s after they start; now = 3600 s, so the lookback starts at 0 s.
# (builds, expected backoff_until in seconds after T0)
BACKOFF_CASES = {
    "no failure": ([succeeded(3000)], None),
    "first failure waits the base": ([failed(3000)], 3030 + 15),
    "second failure doubles": ([failed(2900), failed(3000)], 3030 + 30),
    "third failure doubles again": ([failed(2800), failed(2900), failed(3000)], 3030 + 60),
    "capped at the maximum": ([failed(2000 + i * 100) for i in range(10)], 2930 + 600),
    "a success clears backoff": ([failed(2900), succeeded(2950)], None),
    "failure just outside the lookback does not count": ([failed(-31)], None),
    "failure just inside the lookback counts": ([failed(-29)], 1 + 15),
    "only failures inside the lookback count": ([failed(-31), failed(-29)], 1 + 15),
    "older template hash ignored": ([failed(3000, template_hash=OLD_HASH)], None),
}


@pytest.mark.parametrize(
    ("builds", "backoff_until"), list(BACKOFF_CASES.values()), ids=list(BACKOFF_CASES)
)
def test_backoff(migrated_dsn: str, builds: list[Build], backoff_until: float | None):
    state = _state(migrated_dsn, builds, hard_limit=0)
    assert state.backoff_until == (None if backoff_until is None else at(backoff_until))


def test_in_backoff_until_the_deadline(migrated_dsn: str):
    state = _state(migrated_dsn, [failed(3000)], now=3030)
    assert state.backoff_until == at(3045)
    assert state.in_backoff(at(3044))
    assert not state.in_backoff(at(3045))


def test_a_long_streak_does_not_overflow(migrated_dsn: str):
    state = _state(migrated_dsn, [failed(2000 + i) for i in range(120)], hard_limit=0)
    assert state.recent_failures == 120
    assert state.backoff_until == at(2119 + 30) + CAP
