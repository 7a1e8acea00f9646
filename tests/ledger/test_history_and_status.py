"""What a restart may write (gaps only), and the presets.status column kept
current by the database in the same transaction as each cause."""

from __future__ import annotations

import psycopg

from prewarm.api.preset import PrebuildStatus
from prewarm.ledger.models import ReplayedBuild
from prewarm.ledger.repository import Ledger
from tests.ledger.scenario import HASH, OLD_HASH, PRESET, failed, record, succeeded
from tests.ledger.support import at, run_with_ledger


def _column(dsn: str, uid: str = PRESET) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT status::text FROM presets WHERE uid = %s", (uid,)).fetchone()
    assert row is not None
    return str(row[0])


def test_restart_replay_never_rewrites_recorded_failures(migrated_dsn: str) -> None:
    """Issue 12.3: a restart's replay replaced the real failure (time, reason,
    message, validation flag) with "replayed from the workspace's status"."""

    async def scenario(ledger: Ledger) -> None:
        await ledger.upsert_preset(PRESET, "team-a", "python", HASH, hard_limit=3)
        await ledger.record_build_started(PRESET, "ws-1", "pw-1", HASH, at(0))
        await ledger.record_build_failed(
            "ws-1", "PodRejected", "the real cause", at(30), validation_error=True
        )
        # The replay knows less, and earlier times (the creation timestamp).
        await ledger.replay_build(
            ReplayedBuild(
                "ws-1",
                PRESET,
                "pw-1",
                HASH,
                at(-5),
                failed_at=at(-5),
                failure_reason="Unknown",
                failure_message="from status",
            )
        )

    run_with_ledger(migrated_dsn, scenario)
    history = run_with_ledger(migrated_dsn, lambda ledger: ledger.history("team-a", "python"))
    (build,) = history
    assert build.started_at == at(0)
    assert build.failed_at == at(30)
    assert build.failure_reason == "PodRejected"
    assert build.failure_message == "the real cause"
    assert build.validation_error


def test_restart_replay_fills_what_the_ledger_lacks(migrated_dsn: str) -> None:
    async def scenario(ledger: Ledger) -> None:
        await ledger.upsert_preset(PRESET, "team-a", "python", HASH, hard_limit=3)
        # A crash fell between the Kubernetes writes and the ledger rows.
        await ledger.replay_build(ReplayedBuild("ws-2", PRESET, "pw-2", HASH, at(0)))
        await ledger.replay_build(
            ReplayedBuild(
                "ws-2",
                PRESET,
                "pw-2",
                HASH,
                at(0),
                failed_at=at(40),
                failure_reason="CrashLoop",
                failure_message="restarted 5 times",
            )
        )

    run_with_ledger(migrated_dsn, scenario)
    (build,) = run_with_ledger(migrated_dsn, lambda ledger: ledger.history("team-a", "python"))
    assert (build.state, build.failed_at, build.failure_reason) == ("failed", at(40), "CrashLoop")
    assert build.failure_message == "restarted 5 times"


def test_prebuild_status_column_follows_every_transition(migrated_dsn: str) -> None:
    """Issue 12.5: presets.status stayed 'normal' whatever happened."""
    seen: list[str] = []

    async def scenario(ledger: Ledger) -> None:
        await ledger.upsert_preset(PRESET, "team-a", "python", HASH, hard_limit=3)
        seen.append(_column(migrated_dsn))
        await record(ledger, [failed(0), failed(60)])
        seen.append(_column(migrated_dsn))
        await record(ledger, [failed(120)])
        seen.append(_column(migrated_dsn))  # the third failure in a row
        await ledger.record_retry(PRESET, "first", at(200))
        seen.append(_column(migrated_dsn))
        await record(ledger, [failed(300, validation_error=True, reason="PodRejected")])
        seen.append(_column(migrated_dsn))
        # A new template starts clean; switching back finds its history.
        await ledger.upsert_preset(PRESET, "team-a", "python", OLD_HASH, 2, hard_limit=3)
        seen.append(_column(migrated_dsn))
        await ledger.upsert_preset(PRESET, "team-a", "python", HASH, 3, hard_limit=3)
        seen.append(_column(migrated_dsn))
        # A success after failures of another kind: normal again.
        await ledger.upsert_preset(PRESET, "team-a", "python", OLD_HASH, 4, hard_limit=1)
        await record(ledger, [failed(400, template_hash=OLD_HASH)])
        seen.append(_column(migrated_dsn))
        await record(ledger, [succeeded(500, template_hash=OLD_HASH)])
        seen.append(_column(migrated_dsn))
        # Raising the limit lifts it without a build; 0 disables it.
        await record(ledger, [failed(600, template_hash=OLD_HASH)])
        seen.append(_column(migrated_dsn))
        await ledger.upsert_preset(PRESET, "team-a", "python", OLD_HASH, 5, hard_limit=0)
        seen.append(_column(migrated_dsn))

    run_with_ledger(migrated_dsn, scenario)
    assert seen == [
        "normal",
        "normal",
        "hard_limited",
        "normal",
        "validation_failed",
        "normal",
        "validation_failed",
        "hard_limited",
        "normal",
        "hard_limited",
        "normal",
    ]


def test_prebuild_status_dry_run_verdict_stays_until_a_new_epoch(migrated_dsn: str) -> None:
    seen: list[str] = []

    async def scenario(ledger: Ledger) -> None:
        await ledger.upsert_preset(PRESET, "team-a", "python", HASH, hard_limit=3)
        assert await ledger.set_preset_status(PRESET, PrebuildStatus.VALIDATION_FAILED)
        seen.append(_column(migrated_dsn))
        # A replayed failure of an older attempt does not clear a dry-run verdict.
        await record(ledger, [failed(0)])
        await ledger.upsert_preset(PRESET, "team-a", "python", HASH, 1, hard_limit=3)
        seen.append(_column(migrated_dsn))
        await ledger.record_retry(PRESET, "fixed-the-policy", at(100))
        seen.append(_column(migrated_dsn))

    run_with_ledger(migrated_dsn, scenario)
    assert seen == ["validation_failed", "validation_failed", "normal"]
