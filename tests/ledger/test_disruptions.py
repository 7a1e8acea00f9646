"""Issue 15: a build lost to its infrastructure is recorded as a disruption and
never counts toward backoff or the hard limit, in the operator's failure
policy and in the presets.status column alike."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from prewarm.ledger.models import FailureState
from prewarm.ledger.repository import Ledger
from tests.ledger.scenario import (
    HASH,
    PRESET,
    Build,
    disrupted,
    failed,
    ready_then_disrupted,
    record,
)
from tests.ledger.support import at, run_with_ledger


def _policy(dsn: str, builds: list[Build]) -> tuple[FailureState, str]:
    async def scenario(ledger: Ledger) -> FailureState:
        await ledger.upsert_preset(PRESET, "team-a", "python", HASH, hard_limit=3)
        await record(ledger, builds)
        return await ledger.failure_state(
            PRESET,
            HASH,
            hard_limit=3,
            backoff_base=timedelta(seconds=15),
            backoff_max=timedelta(minutes=10),
            lookback=timedelta(hours=1),
            now=at(3600),
        )

    state = run_with_ledger(dsn, scenario)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT status::text FROM presets WHERE uid = %s", (PRESET,)).fetchone()
    assert row is not None
    return state, str(row[0])


def test_disruptions_between_failures_neither_count_nor_hide_them(migrated_dsn: str) -> None:
    state, column = _policy(
        migrated_dsn, [failed(0), disrupted(60), failed(120), disrupted(180), failed(240)]
    )
    assert state.hard_limited
    assert state.consecutive_failures == 3
    assert column == "hard_limited"


def test_disruptions_alone_never_limit_or_back_off(migrated_dsn: str) -> None:
    state, column = _policy(migrated_dsn, [disrupted(i * 60) for i in range(5)])
    assert not state.hard_limited
    assert state.consecutive_failures == 0
    assert state.backoff_until is None
    assert state.last_failure is None
    assert column == "normal"


def test_a_build_ready_before_it_was_lost_proves_the_template(migrated_dsn: str) -> None:
    state, column = _policy(migrated_dsn, [failed(0), failed(60), ready_then_disrupted(120)])
    assert state.consecutive_failures == 0
    assert not state.hard_limited
    assert column == "normal"


def test_history_shows_the_disruption_with_its_reason(migrated_dsn: str) -> None:
    _policy(migrated_dsn, [disrupted(0), ready_then_disrupted(60)])
    history = run_with_ledger(migrated_dsn, lambda ledger: ledger.history("team-a", "python"))
    lost_when_ready, lost_early = history
    assert (lost_early.state, lost_early.disruption_reason) == ("disrupted", "Evicted")
    assert lost_early.failed_at is None
    assert (lost_when_ready.state, lost_when_ready.disruption_reason) == ("succeeded", "NodeLost")
    assert lost_when_ready.ready_at is not None
    assert lost_when_ready.disrupted_at is not None


def test_a_refused_workspace_create_is_recorded(migrated_dsn: str) -> None:
    """Issue 15: a PrebuiltWorkspace the API server refuses was retried with no
    ledger row; now each refusal is a row, newest first."""

    async def scenario(ledger: Ledger) -> list[object]:
        await ledger.upsert_preset(PRESET, "team-a", "python", HASH, hard_limit=1)
        for i in range(3):
            await ledger.record_create_refused(PRESET, 403, f"denied by policy ({i})", at(i))
        return list(await ledger.create_refusals(PRESET, limit=2))

    newest, older = run_with_ledger(migrated_dsn, scenario)
    assert (newest.http_status, newest.message) == (403, "denied by policy (2)")  # type: ignore[attr-defined]
    assert older.refused_at == at(1)  # type: ignore[attr-defined]
