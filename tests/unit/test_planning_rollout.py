"""Issue 15: pools that stay warm while they change. Stale warm workspaces (an
older template, a manual invalidation, a TTL) are replaced like a Deployment
rolls: replacements first, within maxSurge; the old go as the new are Ready,
within maxUnavailable; a broken new template never takes the old ones down."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from prewarm.api import reasons
from prewarm.api.preset import PresetStatus, Rollout
from prewarm.api.workspace import WorkspacePhase as P
from prewarm.planning.claims import PresetView, decide_claim, eligible
from prewarm.planning.pool import DeleteReason, FailureView, Instance, PoolInput, plan_pool, scaled
from prewarm.planning.preset_pass import PoolKnobs, PoolSnapshot, decide_pool
from prewarm.planning.preset_status import FailureSummary, StatusInput, compute_status
from prewarm.planning.schedule import DesiredCount

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
NEW, OLD = "aaaaaa", "bbbbbb"


def warm(name: str, thash: str = OLD, age_s: int = 600) -> Instance:
    created = NOW - timedelta(seconds=age_s)
    return Instance(name, thash, P.READY, created, ready_at=created + timedelta(seconds=5))


def starting(name: str, thash: str = NEW) -> Instance:
    return Instance(name, thash, P.BUILDING, NOW - timedelta(seconds=10))


def plan(instances: list[Instance], desired: int = 4, **kw: object):  # type: ignore[no-untyped-def]
    fields: dict[str, object] = {"max_surge": 1, "max_unavailable": 0, **kw}
    return plan_pool(
        PoolInput(desired=desired, template_hash=NEW, instances=instances, now=NOW, **fields)  # type: ignore[arg-type]
    )


# (value, total, round up, expected)
SCALED = [(2, 10, True, 2), ("25%", 4, True, 1), ("25%", 5, True, 2), ("25%", 5, False, 1),
          ("0%", 9, True, 0), ("100%", 3, False, 3)]  # fmt: skip


@pytest.mark.parametrize(("value", "total", "up", "expected"), SCALED)
def test_counts_and_percentages_round_like_a_deployment(
    value: int | str, total: int, up: bool, expected: int
) -> None:
    assert scaled(value, total, round_up=up) == expected


def test_a_template_change_never_drops_ready_below_desired() -> None:
    old = [warm(f"old{i}", age_s=600 + i) for i in range(4)]
    first = plan(old)
    assert (first.create, first.deletions) == (1, ())  # one replacement first (maxSurge 1)
    assert (first.counts.ready, first.counts.outdated) == (4, 4)
    # The replacement is Ready: the oldest old one goes, the next replacement starts.
    second = plan([*old, warm("new0", NEW, age_s=1)])
    assert [(d.name, d.reason) for d in second.deletions] == [("old3", DeleteReason.OUTDATED)]
    assert second.create == 1
    assert second.counts.ready == 4
    # A replacement still starting holds the next deletion back.
    waiting = plan([*old[:3], warm("new0", NEW, age_s=1), starting("new1")])
    assert waiting.deletions == ()
    assert waiting.create == 0  # desired + maxSurge reached


def test_max_unavailable_trades_warm_workspaces_for_speed() -> None:
    old = [warm(f"old{i}", age_s=600 + i) for i in range(4)]
    fast = plan(old, max_surge=1, max_unavailable=1)
    assert len(fast.deletions) == 1  # one may go at once...
    assert fast.create == 2  # ...and two replacements start
    assert fast.counts.ready == 3


def test_a_broken_new_template_never_takes_the_old_pool_down() -> None:
    old = [warm(f"old{i}") for i in range(3)]
    limited = plan(old, desired=3, failure=FailureView(hard_limited=True))
    assert (limited.create, limited.deletions) == (0, ())
    assert (limited.counts.ready, limited.counts.outdated) == (3, 3)
    status = compute_status(
        PresetStatus(template_hash=OLD),
        StatusInput(
            name="p",
            generation=2,
            template_hash=NEW,
            plan=limited,
            failure=FailureSummary(True, 3, 3, False, None, None, None),
            paused=False,
            paused_by=None,
            desired_note=None,
            now=NOW,
        ),
    )
    progressing = {c.type: c for c in status.conditions}[reasons.PROGRESSING]
    assert (progressing.status, progressing.reason) == ("False", reasons.REASON_ROLLOUT_BLOCKED)
    assert "3 outdated" in progressing.message
    assert status.previous_template_hash == OLD  # claims may still take them
    assert status.ready == 3


def test_manual_invalidation_replaces_what_was_created_before_it() -> None:
    pool = [warm("before", NEW, age_s=3600), warm("after", NEW, age_s=60)]
    cut = NOW - timedelta(seconds=600)
    first = plan(pool, desired=2, replace_created_before=cut)
    assert (first.create, first.deletions, first.counts.outdated) == (1, (), 1)
    done = plan([*pool, warm("fresh", NEW, age_s=1)], desired=2, replace_created_before=cut)
    assert [(d.name, d.reason) for d in done.deletions] == [("before", DeleteReason.OUTDATED)]


def test_stale_starting_ones_go_at_once_whatever_blocks_creates() -> None:
    mixed = [warm("old"), starting("old-starting", OLD)]
    blocked = plan(mixed, desired=1, failure=FailureView(validation_failed=True))
    assert [d.name for d in blocked.deletions] == ["old-starting"]


def test_decide_pool_resolves_the_presets_rollout() -> None:
    snapshot = PoolSnapshot(
        template_hash=NEW,
        instances=[warm(f"old{i}") for i in range(8)],
        wanted=DesiredCount(8),
        failure=FailureSummary(False, 3, 0, False, None, None, None),
        now=NOW,
        rollout=Rollout(max_surge="50%", max_unavailable="25%"),
    )
    knobs = PoolKnobs(max_instances_per_preset=100, max_creates_per_preset=100,
                      max_creates_global=100, hard_limit=0)  # fmt: skip
    decision = decide_pool(snapshot, knobs)
    assert len(decision.plan.deletions) == 2  # 25% of 8 may be unavailable
    assert decision.plan.create == 6  # up to 8 + 50%: 12 in all, 6 old remain


def test_claims_take_the_previous_templates_warm_ones_only_after_the_current() -> None:
    pool = [warm("old", OLD, age_s=900), warm("new", NEW, age_s=10), warm("planted", "cccccc")]
    assert eligible(pool, NEW, OLD) == ["new", "old"]
    assert eligible(pool, NEW) == ["new"]  # no rollout: only the current template
    only_old = [warm("old", OLD), warm("planted", "cccccc")]
    view = PresetView(True, NEW, previous_template_hash=OLD)
    decision = decide_claim(view, only_old)
    assert decision.candidates == ("old",)
    assert decide_claim(replace(view, previous_template_hash=None), only_old).candidates == ()
