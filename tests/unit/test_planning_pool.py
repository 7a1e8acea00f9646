from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prewarm.api.workspace import WorkspacePhase
from prewarm.planning.pool import (
    STARTING_PHASES,
    Blocker,
    DeleteReason,
    FailureView,
    Instance,
    PoolInput,
    plan_pool,
    pool_starting,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
H = "hash-new"


def inst(
    name: str,
    phase: WorkspacePhase = WorkspacePhase.READY,
    template_hash: str = H,
    age_s: int = 60,
    ready_age_s: int | None = 30,
    claimed: bool = False,
    deleting: bool = False,
) -> Instance:
    return Instance(
        name=name,
        template_hash=template_hash,
        phase=phase,
        created_at=NOW - timedelta(seconds=age_s),
        ready_at=NOW - timedelta(seconds=ready_age_s)
        if phase is WorkspacePhase.READY and ready_age_s is not None
        else None,
        failed_at=NOW - timedelta(seconds=age_s) if phase is WorkspacePhase.FAILED else None,
        claimed=claimed or phase is WorkspacePhase.CLAIMED,
        deleting=deleting,
    )


def test_empty_pool_creates_desired() -> None:
    plan = plan_pool(PoolInput(desired=3, template_hash=H, instances=[], now=NOW))
    assert plan.create == 3
    assert plan.deletions == ()
    assert plan.blocked_by is None


def test_in_flight_instances_are_not_asked_for_again() -> None:
    plan = plan_pool(
        PoolInput(
            desired=3,
            template_hash=H,
            instances=[inst("a", WorkspacePhase.PENDING), inst("b", WorkspacePhase.BUILDING)],
            now=NOW,
        )
    )
    assert plan.create == 1
    assert plan.counts.starting == 2


def test_outdated_warm_ones_keep_serving_while_backoff_holds_their_replacements() -> None:
    """Issue 15: a rollout never empties the pool; what cannot be replaced stays warm."""
    plan = plan_pool(
        PoolInput(
            desired=2,
            template_hash=H,
            instances=[inst("old1", template_hash="old"), inst("old2", template_hash="old")],
            now=NOW,
            failure=FailureView(backoff_until=NOW + timedelta(minutes=5)),
        )
    )
    assert plan.deletions == ()
    assert plan.create == 0
    assert plan.blocked_by is Blocker.BACKOFF
    assert (plan.counts.ready, plan.counts.outdated) == (2, 2)


def test_backoff_in_the_past_does_not_block() -> None:
    plan = plan_pool(
        PoolInput(
            desired=1,
            template_hash=H,
            instances=[],
            now=NOW,
            failure=FailureView(backoff_until=NOW - timedelta(seconds=1)),
        )
    )
    assert plan.create == 1


@pytest.mark.parametrize(
    ("failure", "blocker"),
    [
        (FailureView(hard_limited=True), Blocker.HARD_LIMITED),
        (FailureView(validation_failed=True), Blocker.VALIDATION_FAILED),
    ],
)
def test_given_up_presets_create_nothing_and_the_old_pool_keeps_serving(
    failure: FailureView, blocker: Blocker
) -> None:
    """Issue 15: a broken new template never takes the old warm ones down; what
    is stale and not warm (a starting one of the old template) still goes."""
    plan = plan_pool(
        PoolInput(
            desired=2,
            template_hash=H,
            instances=[
                inst("old", template_hash="old"),
                inst("x", ready_age_s=7200),
                inst("old-starting", WorkspacePhase.BUILDING, template_hash="old"),
            ],
            now=NOW,
            ttl=timedelta(hours=1),
            failure=failure,
        )
    )
    assert plan.create == 0
    assert plan.blocked_by is blocker
    assert [(d.name, d.reason) for d in plan.deletions] == [("old-starting", DeleteReason.OUTDATED)]
    assert (plan.counts.ready, plan.counts.outdated) == (2, 2)


def test_ttl_counts_from_readiness_and_an_expired_one_is_replaced_rolling() -> None:
    pool = [inst("fresh", age_s=7200, ready_age_s=60), inst("stale", age_s=7200, ready_age_s=3601)]
    inp = PoolInput(desired=2, template_hash=H, instances=pool, now=NOW, ttl=timedelta(hours=1))
    plan = plan_pool(inp)
    # Its replacement first (maxSurge); the expired one serves until that is Ready.
    assert plan.deletions == ()
    assert plan.create == 1
    replaced = plan_pool(replace(inp, instances=[*pool, inst("new", ready_age_s=1)]))
    assert replaced.deleted(DeleteReason.EXPIRED) == ["stale"]
    assert replaced.create == 0


def test_scale_down_drops_starting_before_ready_and_oldest_ready_first() -> None:
    plan = plan_pool(
        PoolInput(
            desired=1,
            template_hash=H,
            instances=[
                inst("ready-old", ready_age_s=500),
                inst("ready-new", ready_age_s=10),
                inst("starting", WorkspacePhase.BUILDING, age_s=5),
            ],
            now=NOW,
        )
    )
    assert plan.deleted(DeleteReason.EXTRANEOUS) == ["starting", "ready-old"]
    assert plan.counts.ready == 1


def test_failed_instances_keep_the_newest_for_inspection() -> None:
    failed = [inst(f"f{i}", WorkspacePhase.FAILED, age_s=10 * i) for i in range(5)]
    plan = plan_pool(PoolInput(desired=0, template_hash=H, instances=failed, now=NOW))
    assert sorted(plan.deleted(DeleteReason.FAILED_CLEANUP)) == ["f3", "f4"]
    assert plan.counts.failed == 5


def test_paused_touches_nothing() -> None:
    plan = plan_pool(
        PoolInput(
            desired=5,
            template_hash=H,
            instances=[inst("old", template_hash="old")],
            now=NOW,
            paused=True,
        )
    )
    assert plan.create == 0
    assert plan.deletions == ()
    assert plan.blocked_by is Blocker.PAUSED


def test_create_budget_bounds_creates() -> None:
    plan = plan_pool(
        PoolInput(desired=100, template_hash=H, instances=[], now=NOW, create_budget=20)
    )
    assert plan.create == 20
    assert plan.blocked_by is Blocker.CREATE_BUDGET


def test_claimed_and_deleting_instances_do_not_count_toward_the_pool() -> None:
    plan = plan_pool(
        PoolInput(
            desired=2,
            template_hash=H,
            instances=[
                inst("c", WorkspacePhase.CLAIMED, template_hash="old"),
                inst("d", deleting=True),
            ],
            now=NOW,
        )
    )
    assert plan.create == 2
    assert plan.deletions == ()
    assert plan.counts.claimed == 1


phases = st.sampled_from(list(WorkspacePhase))
instances = st.lists(
    st.builds(
        inst,
        name=st.uuids().map(str),
        phase=phases,
        template_hash=st.sampled_from([H, "old"]),
        age_s=st.integers(0, 10_000),
        ready_age_s=st.integers(0, 10_000),
        claimed=st.booleans(),
        deleting=st.booleans(),
    ),
    max_size=30,
    unique_by=lambda i: i.name,
)
failures = st.builds(
    FailureView,
    hard_limited=st.booleans(),
    validation_failed=st.booleans(),
    backoff_until=st.none() | st.integers(-600, 600).map(lambda s: NOW + timedelta(seconds=s)),
)
inputs = st.builds(
    PoolInput,
    desired=st.integers(0, 20),
    template_hash=st.just(H),
    instances=instances,
    now=st.just(NOW),
    ttl=st.none() | st.integers(1, 10_000).map(lambda s: timedelta(seconds=s)),
    paused=st.booleans(),
    failure=failures,
    create_budget=st.integers(0, 50),
    max_surge=st.integers(0, 5),
    max_unavailable=st.integers(0, 5),
)


def _expired(i: Instance, inp: PoolInput) -> bool:
    return (
        inp.ttl is not None
        and i.phase is WorkspacePhase.READY
        and i.ready_at is not None
        and i.ready_at + inp.ttl <= inp.now
    )


def _serving(i: Instance) -> bool:
    return not i.claimed and not i.deleting and i.phase is WorkspacePhase.READY


@settings(max_examples=300)
@given(inputs)
def test_invariants(inp: PoolInput) -> None:
    plan = plan_pool(inp)
    by_name = {i.name: i for i in inp.instances}
    deleted = {d.name for d in plan.deletions}
    assert len(deleted) == len(plan.deletions), "an instance deleted twice"
    # Never touches a claimed workspace, nor one already going away.
    assert all(not by_name[n].claimed and not by_name[n].deleting for n in deleted)
    live = [
        i
        for i in inp.instances
        if not i.claimed
        and not i.deleting
        and i.name not in deleted
        and (i.phase in STARTING_PHASES or i.phase is WorkspacePhase.READY)
    ]
    stale = [i for i in live if i.template_hash != H or _expired(i, inp)]
    if not inp.paused:
        # Never more fresh warm instances than desired; creates stop at desired + maxSurge.
        assert len(live) - len(stale) + plan.create <= inp.desired
        surge = inp.max_surge or (0 if inp.max_unavailable else 1)  # both 0: surge 1
        assert plan.create == 0 or len(live) + plan.create <= inp.desired + surge
        # Stale ones that serve nobody go at once, whatever blocks creates.
        assert all(i.phase is WorkspacePhase.READY for i in stale)
        # A rollout never takes the pool below desired - maxUnavailable while it could
        # stay there: stale warm ones go only as far as fresh Ready ones replace them.
        warm_before = [i for i in by_name.values() if _serving(i)]
        warm_after = [i for i in live if i.phase is WorkspacePhase.READY]
        floor = min(len(warm_before), max(inp.desired - inp.max_unavailable, 0))
        assert len(warm_after) >= floor
    else:
        assert plan.deletions == ()
    # A given-up or paused preset creates nothing; creates respect the budget.
    if inp.paused or inp.failure.hard_limited or inp.failure.validation_failed:
        assert plan.create == 0
    assert 0 <= plan.create <= inp.create_budget


def test_claim_storm_claimed_workspaces_do_not_eat_the_create_budget() -> None:
    """Issue 12.1: status-less cold starts (owned by claims) once counted as the
    pool's starting instances, so after a storm the pool refilled nothing."""
    cold = [inst(f"cold{i}", WorkspacePhase.PENDING, claimed=True) for i in range(20)]
    pool = [inst("r1"), inst("r2"), inst("s1", WorkspacePhase.BUILDING)]
    assert pool_starting(cold + pool) == 1
    plan = plan_pool(
        PoolInput(
            desired=6,
            template_hash=H,
            instances=cold + pool,
            now=NOW,
            create_budget=10 - pool_starting(cold + pool),
        )
    )
    assert plan.create == 3
    assert plan.blocked_by is None
