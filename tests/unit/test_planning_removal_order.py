"""Order of removal (issue 15): expired before extraneous, then oldest; failed
workspaces kept for inspection up to a number the preset (or the operator) sets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from prewarm.api.preset import FailurePolicy, PresetSpec
from prewarm.api.workspace import WorkspacePhase as P
from prewarm.planning.pool import DeleteReason, Instance, PoolInput, plan_pool
from prewarm.planning.preset_pass import PoolKnobs, PoolSnapshot, decide_pool
from prewarm.planning.preset_status import FailureSummary
from prewarm.planning.schedule import DesiredCount
from prewarm.settings import Settings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
H = "hash-now"
TTL = timedelta(hours=1)
CLEAN = FailureSummary(False, 3, 0, False, None, None, None)


def ready(name: str, ready_age_s: int, template_hash: str = H) -> Instance:
    created = NOW - timedelta(seconds=ready_age_s + 30)
    return Instance(
        name, template_hash, P.READY, created, ready_at=NOW - timedelta(seconds=ready_age_s)
    )


def starting(name: str, age_s: int) -> Instance:
    return Instance(name, H, P.BUILDING, NOW - timedelta(seconds=age_s))


def failed(name: str, failed_age_s: int, template_hash: str = H) -> Instance:
    at = NOW - timedelta(seconds=failed_age_s)
    return Instance(name, template_hash, P.FAILED, at - timedelta(seconds=60), failed_at=at)


def _plan(desired: int, instances: list[Instance], **kw: object):  # type: ignore[no-untyped-def]
    return plan_pool(
        PoolInput(desired=desired, template_hash=H, instances=instances, now=NOW, ttl=TTL, **kw)  # type: ignore[arg-type]
    )


def test_an_expired_workspace_goes_before_any_extraneous_one() -> None:
    # Scale 3 -> 2 while one is past its TTL: removing the expired one is enough;
    # a fresh one must not go as extraneous too.
    plan = _plan(2, [ready("expired", 3700), ready("older", 3000), ready("newer", 10)])
    assert [(d.name, d.reason) for d in plan.deletions] == [("expired", DeleteReason.EXPIRED)]
    assert plan.create == 0


def test_expired_then_extraneous_oldest_ready_first() -> None:
    plan = _plan(
        1,
        [ready("newest", 10), ready("expired", 4000), ready("oldest", 3000), ready("mid", 600)],
    )
    assert [(d.name, d.reason) for d in plan.deletions] == [
        ("expired", DeleteReason.EXPIRED),
        ("oldest", DeleteReason.EXTRANEOUS),
        ("mid", DeleteReason.EXTRANEOUS),
    ]
    assert plan.counts.ready == 1


def test_extraneous_work_in_progress_goes_before_ready_ones_newest_first() -> None:
    # A build in progress is worth less than a warm one: it goes first
    # (the newest, least advanced first), then the oldest Ready.
    plan = _plan(
        1,
        [
            ready("warm-old", 2000),
            ready("warm-new", 5),
            starting("s-old", 40),
            starting("s-new", 2),
        ],
    )
    assert plan.deleted(DeleteReason.EXTRANEOUS) == ["s-new", "s-old", "warm-old"]


def test_ttl_never_expires_a_claimed_workspace() -> None:
    claimed = Instance(
        "mine",
        H,
        P.CLAIMED,
        NOW - timedelta(days=3),
        ready_at=NOW - timedelta(days=3),
        claimed=True,
    )
    plan = _plan(0, [claimed])
    assert plan.deletions == ()
    assert plan.counts.claimed == 1


@pytest.mark.parametrize(
    ("keep", "kept"),
    [(0, []), (1, ["f1"]), (3, ["f1", "f2", "f3"]), (9, ["f1", "f2", "f3", "f4", "f5"])],
)
def test_failed_workspaces_kept_for_inspection_newest_first(keep: int, kept: list[str]) -> None:
    failures = [failed(f"f{i}", failed_age_s=100 * i) for i in range(1, 6)]
    outdated = failed("old-template", 1, template_hash="hash-before")
    plan = _plan(0, [*failures, outdated], keep_failed=keep)
    deleted = set(plan.deleted(DeleteReason.FAILED_CLEANUP))
    assert sorted({f.name for f in failures} - deleted) == kept
    # Failed ones of an outdated template are not kept: they go as outdated.
    assert plan.deleted(DeleteReason.OUTDATED) == ["old-template"]


def _decide(knobs: PoolKnobs) -> set[str]:
    failures = [failed(f"f{i}", failed_age_s=100 * i) for i in range(1, 6)]
    snapshot = PoolSnapshot(
        template_hash=H, instances=failures, wanted=DesiredCount(0), failure=CLEAN, now=NOW
    )
    plan = decide_pool(snapshot, knobs).plan
    return {i.name for i in failures} - set(plan.deleted(DeleteReason.FAILED_CLEANUP))


def test_the_pass_keeps_as_many_failed_as_the_knobs_say() -> None:
    # It was hard-coded to 3: the knob did not exist.
    assert _decide(PoolKnobs(500, 20, 200, 3, failed_to_keep=1)) == {"f1"}
    assert _decide(PoolKnobs(500, 20, 200, 3, failed_to_keep=0)) == set()
    assert _decide(PoolKnobs(500, 20, 200, 3)) == {"f1", "f2", "f3"}


def test_failed_to_keep_is_a_preset_field_with_an_operator_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = PresetSpec.model_validate(
        {
            "template": {"spec": {"containers": [{"name": "w", "image": "x"}]}},
            "failurePolicy": {"failedToKeep": 7},
        }
    )
    assert spec.failure_policy.failed_to_keep == 7
    assert FailurePolicy().failed_to_keep is None
    with pytest.raises(ValidationError):
        FailurePolicy.model_validate({"failedToKeep": -1})
    monkeypatch.setenv("PREWARM_FAILED_TO_KEEP", "5")
    assert Settings().failed_to_keep == 5
    monkeypatch.delenv("PREWARM_FAILED_TO_KEEP")
    assert Settings().failed_to_keep == 3


def test_failed_to_keep_does_not_change_the_template_hash() -> None:
    from prewarm.api.hashing import template_hash

    base = {"template": {"spec": {"containers": [{"name": "w", "image": "x"}]}}}
    with_keep = {**base, "failurePolicy": {"failedToKeep": 10}}
    assert template_hash(PresetSpec.model_validate(base)) == template_hash(
        PresetSpec.model_validate(with_keep)
    )
