"""The ledger tells the truth (issue 15): one claim per workspace, a new
hard-limit episode on a revert, and writes that cannot succeed are dropped,
not retried forever."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from prewarm.api.claim import ClaimSource
from prewarm.ledger.models import FailureState, ReplayedBuild
from prewarm.ledger.repository import Ledger
from prewarm.ledger.writer import BackgroundWrites
from tests.ledger.scenario import failed, record
from tests.ledger.support import at, run_with_ledger

REPO = Path(__file__).resolve().parents[2]
HASH_A = "hash-a"
HASH_B = "hash-b"


async def _bind(ledger: Ledger, claim: str, workspace_uid: str, when: float) -> None:
    await ledger.record_claim_requested(claim, "p1", "team-a", claim, "alice", at(when))
    await ledger.record_claim_bound(
        claim, workspace_uid, f"name-of-{workspace_uid}", "alice", ClaimSource.PREBUILT, at(when)
    )


# -- one claim per workspace ---------------------------------------------------------------


def test_the_database_refuses_a_second_claim_on_one_workspace(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> None:
        await _bind(ledger, "claim-1", "ws-1", 1)
        await _bind(ledger, "claim-1", "ws-1", 1)  # a replay of the same binding is fine
        with pytest.raises(psycopg.errors.UniqueViolation):
            await _bind(ledger, "claim-2", "ws-1", 2)

    run_with_ledger(migrated_dsn, scenario)
    with psycopg.connect(migrated_dsn) as conn:
        rows = conn.execute(
            "SELECT claim_uid, workspace_uid, state FROM claims ORDER BY claim_uid"
        ).fetchall()
    assert rows == [("claim-1", "ws-1", "bound"), ("claim-2", None, "pending")]


def test_unknown_workspace_uids_are_null_and_never_conflict(migrated_dsn: str):
    # The operator writes "" when the bound workspace is not in its index any more.
    async def scenario(ledger: Ledger) -> None:
        await _bind(ledger, "claim-1", "", 1)
        await _bind(ledger, "claim-2", "", 2)

    run_with_ledger(migrated_dsn, scenario)
    with psycopg.connect(migrated_dsn) as conn:
        rows = conn.execute("SELECT workspace_uid, state FROM claims").fetchall()
    assert rows == [(None, "bound"), (None, "bound")]


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
def test_a_conflicting_binding_in_the_write_queue_is_dropped_and_later_writes_go_on(
    migrated_dsn: str, batched: bool
):
    """Batched, the three queued writes go out together and fail together; each
    is then written alone, so only the conflicting one is dropped."""

    async def scenario(ledger: Ledger) -> tuple[list[str], int]:
        dropped: list[str] = []
        writes = BackgroundWrites(
            retry_base_s=0.01,
            on_dropped=lambda what, e: dropped.append(type(e).__name__),
            batching=ledger.batch if batched else None,
        )
        task = asyncio.create_task(writes.run())
        writes.submit("claim-1 bound", lambda: _bind(ledger, "claim-1", "ws-1", 1))
        writes.submit("claim-2 bound", lambda: _bind(ledger, "claim-2", "ws-1", 2))
        writes.submit("claim-3 bound", lambda: _bind(ledger, "claim-3", "ws-3", 3))
        await asyncio.wait_for(writes.drain(), 30)
        task.cancel()
        assert writes.healthy
        return dropped, writes.dropped

    assert run_with_ledger(migrated_dsn, scenario) == (["UniqueViolation"], 1)
    with psycopg.connect(migrated_dsn) as conn:
        bound = conn.execute(
            "SELECT claim_uid FROM claims WHERE state = 'bound' ORDER BY claim_uid"
        ).fetchall()
    assert bound == [("claim-1",), ("claim-3",)]


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
def test_a_foreign_key_violation_in_the_write_queue_is_dropped(
    migrated_dsn: str, batched: bool
) -> None:
    # A replayed build names a preset the ledger never recorded: the foreign key
    # refuses it on every retry. The old queue retried it forever and every
    # write behind it waited (and /readyz said 503).
    orphan = ReplayedBuild(
        workspace_uid="ws-orphan",
        preset_uid="no-such-preset",
        workspace_name="pw-orphan",
        template_hash=HASH_A,
        started_at=at(0),
    )

    async def scenario(ledger: Ledger) -> list[str]:
        dropped: list[str] = []
        writes = BackgroundWrites(
            retry_base_s=0.01,
            on_dropped=lambda what, e: dropped.append(f"{what}: {e.sqlstate}"),  # type: ignore[attr-defined]
            batching=ledger.batch if batched else None,
        )
        task = asyncio.create_task(writes.run())
        writes.submit("replay pw-orphan", lambda: ledger.replay_build(orphan))
        writes.submit("claim-1 bound", lambda: _bind(ledger, "claim-1", "ws-1", 1))
        await asyncio.wait_for(writes.drain(), 30)
        task.cancel()
        assert not writes.stalled(60)
        return dropped

    assert run_with_ledger(migrated_dsn, scenario) == ["replay pw-orphan: 23503"]
    with psycopg.connect(migrated_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM builds").fetchone() == (0,)
        assert conn.execute("SELECT state FROM claims").fetchall() == [("bound",)]


def test_a_cold_build_before_its_presets_first_pass_is_recorded_with_the_preset(
    migrated_dsn: str,
):
    # A claim's cold start can record its build before any pass of the preset
    # upserted the preset: the foreign key used to refuse the build.
    async def scenario(ledger: Ledger) -> FailureState:
        await ledger.record_build_started(
            "p1", "ws-cold", "claim-x", HASH_A, at(0), namespace="team-a", preset_name="python"
        )
        await ledger.record_build_failed("ws-cold", "ImagePullBackOff", "no such image", at(5))
        history = await ledger.history("team-a", "python")
        assert [(b.workspace_name, b.state) for b in history] == [("claim-x", "failed")]
        await ledger.upsert_preset("p1", "team-a", "python", HASH_A, generation=1, hard_limit=1)
        return await ledger.failure_state(
            "p1",
            HASH_A,
            hard_limit=1,
            backoff_base=timedelta(seconds=15),
            backoff_max=timedelta(minutes=10),
            lookback=timedelta(hours=1),
            now=at(10),
        )

    state = run_with_ledger(migrated_dsn, scenario)
    assert state.hard_limited
    with psycopg.connect(migrated_dsn) as conn:
        row = conn.execute("SELECT namespace, name, status::text FROM presets").fetchone()
    assert row == ("team-a", "python", "hard_limited")


# -- hard-limit episodes -------------------------------------------------------------------


async def _limited(ledger: Ledger, thash: str) -> FailureState:
    return await ledger.failure_state(
        "p1",
        thash,
        hard_limit=3,
        backoff_base=timedelta(seconds=15),
        backoff_max=timedelta(minutes=10),
        lookback=timedelta(hours=1),
        now=at(3600),
    )


def test_a_revert_to_a_template_hard_limited_before_is_a_new_episode(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> list[object]:
        seen: list[object] = []
        await ledger.upsert_preset("p1", "team-a", "python", HASH_A, 1, 3, at=at(0))
        await record(ledger, [failed(10, template_hash=HASH_A) for _ in range(3)], "p1")
        first = await _limited(ledger, HASH_A)
        seen += [first.hard_limited, await _notify(ledger, first)]
        seen.append(await _notify(ledger, await _limited(ledger, HASH_A)))  # same episode
        await ledger.upsert_preset("p1", "team-a", "python", HASH_B, 2, 3, at=at(100))
        seen.append((await _limited(ledger, HASH_B)).hard_limited)
        await ledger.upsert_preset("p1", "team-a", "python", HASH_A, 3, 3, at=at(200))
        again = await _limited(ledger, HASH_A)
        # Re-limited at once (A's failures still count), and a new episode to announce.
        seen += [again.hard_limited, again.episode_start == at(200)]
        seen += [await _notify(ledger, again), await _notify(ledger, again)]
        # An operator restart upserts the same hash again: the same episode.
        await ledger.upsert_preset("p1", "team-a", "python", HASH_A, 3, 3, at=at(300))
        seen.append(await _notify(ledger, await _limited(ledger, HASH_A)))
        return seen

    assert run_with_ledger(migrated_dsn, scenario) == [
        True,
        True,
        False,
        False,
        True,
        True,
        True,
        False,
        False,
    ]
    with psycopg.connect(migrated_dsn) as conn:
        row = conn.execute("SELECT status::text FROM presets").fetchone()
    assert row == ("hard_limited",)


def test_a_retry_after_the_switch_starts_the_episode(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> tuple[object, object]:
        await ledger.upsert_preset("p1", "team-a", "python", HASH_A, 1, 3, at=at(0))
        await ledger.record_retry("p1", "try-1", at(50))
        state = await _limited(ledger, HASH_A)
        return state.episode_start, state.template_since

    assert run_with_ledger(migrated_dsn, scenario) == (at(50), at(0))


def test_presets_recorded_before_template_since_keep_their_episode(migrated_dsn: str):
    # Rows from before migration 0008 have no template_since: their episode is
    # what it was (the reset epoch), so an upgrade does not announce again.
    async def scenario(ledger: Ledger) -> tuple[object, bool]:
        await ledger.upsert_preset("p1", "team-a", "python", HASH_A, 1, 3)
        await ledger.mark_hard_limit_notified("p1", HASH_A, None)
        async with await psycopg.AsyncConnection.connect(migrated_dsn, autocommit=True) as conn:
            await conn.execute("UPDATE presets SET template_since = NULL")
        state = await _limited(ledger, HASH_A)
        return state.episode_start, await _notify(ledger, state)

    assert run_with_ledger(migrated_dsn, scenario) == (None, False)


async def _notify(ledger: Ledger, state: FailureState) -> bool:
    return await ledger.mark_hard_limit_notified(
        "p1", state.template_hash, state.episode_start, at(0)
    )


# -- migration 0007 on a ledger that already holds claims ---------------------------------------


def test_migration_0007_makes_unknown_uids_null_and_keeps_the_first_of_two_bindings(
    pg_dsn: str, tmp_path: Path
):
    from prewarm.ledger.migrate import migrate

    before = tmp_path / "migrations"
    shutil.copytree(REPO / "migrations", before)
    for later in sorted(before.glob("*.sql"))[6:]:
        later.unlink()
    migrate(pg_dsn, before)
    with psycopg.connect(pg_dsn) as conn:
        for claim, workspace, bound in (
            ("c-unknown-1", "", 1),
            ("c-unknown-2", "", 2),
            ("c-first", "ws-1", 3),
            ("c-second", "ws-1", 4),
            ("c-other", "ws-2", 5),
        ):
            conn.execute(
                "INSERT INTO claims (claim_uid, workspace_uid, bound_at) VALUES (%s, %s, %s)",
                (claim, workspace, at(bound)),
            )
    applied = migrate(pg_dsn)
    assert applied[:2] == [
        "0007_claims_one_per_workspace.sql",
        "0008_preset_template_since.sql",
    ]
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT claim_uid, workspace_uid FROM claims ORDER BY claim_uid")
        assert rows.fetchall() == [
            ("c-first", "ws-1"),
            ("c-other", "ws-2"),
            ("c-second", None),
            ("c-unknown-1", None),
            ("c-unknown-2", None),
        ]


def test_writes_queued_together_go_out_on_one_connection(migrated_dsn: str) -> None:
    """100 writes queued at once: two batches (64 + 36), two connections taken
    from the pool instead of 100, and every write there."""

    async def scenario(ledger: Ledger) -> int:
        writes = BackgroundWrites(batching=ledger.batch)
        before = ledger._pool.get_stats().get("requests_num", 0)
        for i in range(100):
            writes.submit(f"claim-{i}", lambda i=i: _bind(ledger, f"claim-{i}", f"ws-{i}", i))
        task = asyncio.create_task(writes.run())
        await asyncio.wait_for(writes.drain(), 30)
        task.cancel()
        return ledger._pool.get_stats().get("requests_num", 0) - before

    assert run_with_ledger(migrated_dsn, scenario) == 2
    with psycopg.connect(migrated_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM claims WHERE state = 'bound'").fetchone() == (
            100,
        )


def test_a_failed_batch_writes_nothing(migrated_dsn: str) -> None:
    """What Ledger.batch promises the writer: when one write of a batch fails,
    none of the batch is written (the writer then writes each alone)."""

    async def batch(ledger: Ledger) -> None:
        async with ledger.batch():
            await _bind(ledger, "claim-2", "ws-2", 2)
            await _bind(ledger, "claim-3", "ws-1", 3)  # ws-1 is claim-1's
            await _bind(ledger, "claim-4", "ws-4", 4)

    async def scenario(ledger: Ledger) -> None:
        await _bind(ledger, "claim-1", "ws-1", 1)
        with pytest.raises(psycopg.errors.UniqueViolation):
            await batch(ledger)

    run_with_ledger(migrated_dsn, scenario)
    with psycopg.connect(migrated_dsn) as conn:
        claims = conn.execute("SELECT claim_uid FROM claims ORDER BY claim_uid").fetchall()
    assert claims == [("claim-1",)]
