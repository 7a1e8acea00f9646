from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prewarm.api.preset import PrebuildStatus
from prewarm.api.workspace import WorkspacePhase
from prewarm.planning.claims import Action, PresetView, decide_claim, eligible
from prewarm.planning.pool import Instance

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
OK = PresetView(exists=True, template_hash="h")


def inst(
    name: str,
    phase: WorkspacePhase = WorkspacePhase.READY,
    h: str = "h",
    ready_s: int = 10,
    **kw: bool,
) -> Instance:
    return Instance(
        name=name,
        template_hash=h,
        phase=phase,
        created_at=NOW - timedelta(seconds=100),
        ready_at=NOW - timedelta(seconds=ready_s),
        **kw,
    )


def test_only_ready_unclaimed_current_instances_are_eligible_oldest_first() -> None:
    pool = [
        inst("new", ready_s=1),
        inst("old", ready_s=50),
        inst("building", WorkspacePhase.BUILDING),
        inst("outdated", h="old"),
        inst("taken", claimed=True),
        inst("going", deleting=True),
    ]
    assert eligible(pool, "h") == ["old", "new"]


def test_take_skips_workspaces_other_claims_are_taking() -> None:
    decision = decide_claim(OK, [inst("a"), inst("b")], reserved=frozenset({"a"}))
    assert decision.action is Action.TAKE_PREBUILT
    assert decision.candidates == ("b",)


def test_empty_pool_means_cold_start_and_says_why() -> None:
    assert decide_claim(OK, []).action is Action.COLD_START
    paused = decide_claim(PresetView(True, "h", paused=True), [])
    assert paused.action is Action.COLD_START
    assert "paused" in paused.message


def test_given_up_presets_fail_claims_rather_than_build() -> None:
    limited = PresetView(True, "h", PrebuildStatus.HARD_LIMITED)
    assert decide_claim(limited, []).action is Action.FAIL
    # ... but a warm one left over is still handed out.
    assert decide_claim(limited, [inst("a")]).action is Action.TAKE_PREBUILT
    invalid = PresetView(True, "h", PrebuildStatus.VALIDATION_FAILED)
    assert decide_claim(invalid, []).action is Action.FAIL


def test_full_quota_ready_workspaces_serve_claims_whatever_the_preset_state() -> None:
    """Issue 12.2: a preset once (wrongly) ValidationFailed failed every claim
    although Ready workspaces of its template waited; a Ready one proves the
    template works, so it is handed out."""
    invalid = PresetView(True, "h", PrebuildStatus.VALIDATION_FAILED)
    decision = decide_claim(invalid, [inst("a")])
    assert decision.action is Action.TAKE_PREBUILT
    assert decision.candidates == ("a",)


def test_claim_storm_a_started_cold_build_is_resumed_never_doubled_by_a_take() -> None:
    """Issue 12.1: a claim whose cold build was not in the watch yet was
    reconciled again and got a second workspace."""
    decision = decide_claim(OK, [inst("warm")], cold_build="pool-c1234")
    assert decision.action is Action.COLD_START
    assert "pool-c1234" in decision.message


def test_missing_preset_or_secret_waits() -> None:
    assert decide_claim(PresetView(False), []).reason == "PresetNotFound"
    waiting = decide_claim(OK, [inst("a")], secret_missing="creds")
    assert waiting.action is Action.WAIT
    assert "creds" in waiting.message


# Issue 12, item 6: a claim waits for what it names for a limited time.

LIMIT = timedelta(minutes=5)


def test_item6_a_claim_waits_for_its_preset_until_the_limit_then_fails() -> None:
    waiting = decide_claim(PresetView(False), [], waited=timedelta(minutes=4), wait_limit=LIMIT)
    assert (waiting.action, waiting.reason) == (Action.WAIT, "PresetNotFound")
    assert waiting.wait_left == timedelta(minutes=1)
    failed = decide_claim(PresetView(False), [], waited=LIMIT, wait_limit=LIMIT)
    assert (failed.action, failed.reason) == (Action.FAIL, "PresetNotFound")
    assert "5m" in failed.message


def test_item6_the_limit_covers_a_missing_owner_secret_too() -> None:
    failed = decide_claim(
        OK, [inst("a")], secret_missing="creds", waited=timedelta(hours=1), wait_limit=LIMIT
    )
    assert (failed.action, failed.reason) == (Action.FAIL, "SecretNotFound")
    assert "creds" in failed.message


def test_item6_no_limit_waits_forever_and_the_limit_never_fails_other_decisions() -> None:
    forever = decide_claim(PresetView(False), [], waited=timedelta(days=30), wait_limit=None)
    assert forever.action is Action.WAIT
    assert forever.wait_left is None
    late = decide_claim(OK, [], waited=timedelta(days=30), wait_limit=LIMIT)
    assert late.action is Action.COLD_START
