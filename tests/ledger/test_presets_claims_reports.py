"""Preset status, claims, metric totals and history: what `prewarm status/history` show."""

from __future__ import annotations

from prewarm.api.claim import ClaimSource
from prewarm.api.preset import PrebuildStatus
from prewarm.ledger.models import BuildRecord, ClaimLossRecord, ClaimRecord, PresetRecord
from prewarm.ledger.repository import Ledger
from tests.ledger.scenario import building, failed, record, succeeded
from tests.ledger.support import at, run_with_ledger


def test_status_transitions_and_a_new_spec_resets_them(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> tuple[list[bool], PresetRecord | None]:
        await ledger.upsert_preset("p1", "team-a", "python", "h1", generation=1)
        changes = [
            await ledger.set_preset_status("p1", PrebuildStatus.HARD_LIMITED),
            await ledger.set_preset_status("p1", PrebuildStatus.HARD_LIMITED),
            await ledger.upsert_preset("p1", "team-a", "python", "h1", generation=1),
        ]
        limited = await ledger.preset("p1")
        assert limited is not None
        assert limited.status is PrebuildStatus.HARD_LIMITED
        changes.append(await ledger.upsert_preset("p1", "team-a", "python", "h2", generation=2))
        return changes, await ledger.preset("p1")

    changes, preset = run_with_ledger(migrated_dsn, scenario)
    assert changes == [True, False, False, True]
    assert preset is not None
    assert (preset.template_hash, preset.generation, preset.status) == (
        "h2",
        2,
        PrebuildStatus.NORMAL,
    )


def test_a_retry_clears_the_status(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> PresetRecord | None:
        await ledger.upsert_preset("p1", "team-a", "python", "h1")
        await ledger.set_preset_status("p1", PrebuildStatus.VALIDATION_FAILED)
        await ledger.record_retry("p1", "try-1", at(10))
        return await ledger.preset("p1")

    preset = run_with_ledger(migrated_dsn, scenario)
    assert preset is not None
    assert (preset.status, preset.retry_token, preset.reset_at) == (
        PrebuildStatus.NORMAL,
        "try-1",
        at(10),
    )


def test_claims_round_trip(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> list[ClaimRecord]:
        await ledger.record_claim_requested("c-1", "p1", "team-a", "first", "alice", at(0))
        await ledger.record_claim_bound(
            "c-1", "ws-1", "pw-1", "alice", ClaimSource.PREBUILT, at(0.05)
        )
        await ledger.record_claim_reinitialized("c-1", at(1.5))
        await ledger.record_claim_requested("c-2", "p1", "team-a", "second", "bob", at(10))
        await ledger.record_claim_failed("c-2", "ColdStartFailed", at(300))
        await ledger.record_claim_requested("c-3", "p1", "team-a", "third", "carol", at(20))
        return await ledger.recent_claims(limit=10)

    claims = run_with_ledger(migrated_dsn, scenario)
    assert [c.claim_uid for c in claims] == ["c-3", "c-2", "c-1"]
    third, second, first = claims
    assert first == ClaimRecord(
        claim_uid="c-1",
        preset_uid="p1",
        namespace="team-a",
        claim_name="first",
        owner="alice",
        workspace_uid="ws-1",
        workspace_name="pw-1",
        source="prebuilt",
        state="bound",
        requested_at=at(0),
        bound_at=at(0.05),
        reinitialized_at=at(1.5),
        failed_at=None,
        failure_reason=None,
    )
    assert (second.state, second.failure_reason, second.failed_at) == (
        "failed",
        "ColdStartFailed",
        at(300),
    )
    assert (third.state, third.bound_at) == ("pending", None)


def test_recent_claims_respects_the_limit(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> list[ClaimRecord]:
        for i in range(5):
            await ledger.record_claim_requested(f"c-{i}", "p1", "ns", f"claim-{i}", "u", at(i))
        return await ledger.recent_claims(limit=2)

    assert [c.claim_uid for c in run_with_ledger(migrated_dsn, scenario)] == ["c-4", "c-3"]


def test_history_lists_the_newest_builds_with_their_failure_reasons(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> list[BuildRecord]:
        await ledger.upsert_preset("p1", "team-a", "python", "h1")
        await ledger.upsert_preset("p2", "team-a", "other", "h1")
        await record(ledger, [failed(0, reason="ImagePullBackOff"), succeeded(10)], "p1")
        await record(ledger, [failed(20, reason="Unschedulable"), building(30)], "p1")
        await record(ledger, [failed(40, reason="NotMine")], "p2")
        return await ledger.history("team-a", "python", limit=3)

    history = run_with_ledger(migrated_dsn, scenario)
    assert [(b.state, b.started_at, b.failure_reason) for b in history] == [
        ("building", at(30), None),
        ("failed", at(20), "Unschedulable"),
        ("succeeded", at(10), None),
    ]
    assert history[1].failure_message is not None
    assert history[1].failure_message.startswith("Unschedulable in ws-")


def test_a_claim_that_lost_its_workspace_rebinds_then_expires(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> tuple[list[ClaimRecord], list[ClaimLossRecord]]:
        await ledger.record_claim_requested("c-1", "p1", "team-a", "first", "alice", at(0))
        await ledger.record_claim_bound("c-1", "ws-1", "pw-1", "alice", ClaimSource.PREBUILT, at(1))
        await ledger.record_claim_workspace_lost(
            "c-1", "ws-1", "pw-1", "PodDeleted", "Rebind", at(100)
        )
        await ledger.record_claim_rebound("c-1", "ws-2", "pw-2", ClaimSource.COLD, at(130))
        # Replays: the first binding again, the loss again, an older rebind.
        await ledger.record_claim_bound("c-1", "ws-1", "pw-1", "alice", ClaimSource.PREBUILT, at(1))
        await ledger.record_claim_workspace_lost(
            "c-1", "ws-1", "pw-1", "PodDeleted", "Rebind", at(101)
        )
        await ledger.record_claim_rebound("c-1", "ws-0", "pw-0", ClaimSource.COLD, at(120))
        bound = await ledger.recent_claims(limit=1)
        await ledger.record_claim_expired("c-1", at(3600))
        await ledger.record_claim_expired("c-1", at(3700))
        return [*bound, *(await ledger.recent_claims(limit=1))], await ledger.claim_losses("c-1")

    (bound, expired), losses = run_with_ledger(migrated_dsn, scenario)
    assert (bound.workspace_uid, bound.workspace_name, bound.source, bound.state) == (
        "ws-2",
        "pw-2",
        "cold",
        "bound",
    )
    assert (bound.bound_at, bound.rebound_at) == (at(1), at(130))
    assert (expired.state, expired.expired_at) == ("expired", at(3600))
    assert [(x.workspace_name, x.workspace_uid, x.reason, x.policy, x.lost_at) for x in losses] == [
        ("pw-1", "ws-1", "PodDeleted", "Rebind", at(100))
    ]


def test_a_claim_failed_after_a_lost_workspace_is_failed(migrated_dsn: str):
    async def scenario(ledger: Ledger) -> ClaimRecord | None:
        await ledger.record_claim_bound("c-9", "ws-9", "pw-9", "bob", ClaimSource.COLD, at(1))
        await ledger.record_claim_workspace_lost(
            "c-9", "ws-9", "pw-9", "WorkspaceDeleted", "Fail", at(50)
        )
        await ledger.record_claim_failed("c-9", "WorkspaceLost", at(50))
        return await ledger.claim("c-9")

    claim = run_with_ledger(migrated_dsn, scenario)
    assert claim is not None
    assert (claim.state, claim.failure_reason, claim.workspace_uid) == (
        "failed",
        "WorkspaceLost",
        None,
    )


def test_a_claim_whose_take_never_landed_records_its_workspace_as_unavailable(
    migrated_dsn: str,
):
    """Migration 0013: a claim binds first; a workspace that went to another
    claim before its take is lost as 'WorkspaceUnavailable' (refused before)."""

    async def scenario(ledger: Ledger) -> list[ClaimLossRecord]:
        await ledger.record_claim_bound("c-7", "ws-7", "pw-7", "eve", ClaimSource.PREBUILT, at(1))
        await ledger.record_claim_workspace_lost(
            "c-7", "ws-7", "pw-7", "WorkspaceUnavailable", "Rebind", at(2)
        )
        return await ledger.claim_losses("c-7")

    losses = run_with_ledger(migrated_dsn, scenario)
    assert [(x.workspace_name, x.reason) for x in losses] == [("pw-7", "WorkspaceUnavailable")]
