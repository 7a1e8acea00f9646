"""One preset pass's decisions as a whole (planning/preset_decision.py): the
two rounds, the status write and its throttle, the Events, the hard-limit
notice and the one requeue delay."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from tests.unit.test_planning_preset_pass import CLEAN, KNOBS, NOW, inst, pod, snap, ws

from prewarm.api import reasons
from prewarm.api.preset import AutoscaleStatus, PrebuildStatus, PresetStatus
from prewarm.api.workspace import WorkspacePhase as P
from prewarm.planning.preset_decision import (
    STATUS_DELAY_S,
    PresetPlan,
    PresetSnapshot,
    TrackedWorkspace,
    decide_preset,
    decide_workspaces,
    instance_after,
)
from prewarm.planning.preset_pass import BUILDING_AFTER, LEDGER_DOWN_RETRY_S, Step
from prewarm.planning.preset_status import FailureSummary, status_patch

HARD_LIMITED = FailureSummary(True, 3, 3, False, None, None, None)


def decide(
    want: int,
    instances: list[Any] | None = None,
    previous: PresetStatus | None = None,
    stored: dict[str, Any] | None = None,
    held_for: float | None = None,
    **kw: Any,
) -> PresetPlan:
    previous = previous or PresetStatus()
    return decide_preset(
        PresetSnapshot(
            name="p",
            generation=1,
            previous=previous,
            stored_status=status_patch(previous) if stored is None else stored,
            pool=snap(want, instances, **kw),
            status_held_for=held_for,
        ),
        KNOBS,
    )


def settled(want: int, instances: list[Any] | None = None, **kw: Any) -> PresetStatus:
    """The status a pass writes for this pool (what the watch shows next)."""
    return decide(want, instances, **kw).status


def test_a_converged_pool_writes_nothing_and_sleeps() -> None:
    pool = [inst("a"), inst("b")]
    status = settled(2, pool)
    plan = decide(2, pool, previous=status)
    assert not plan.write_status
    assert plan.pool.creating == 0
    assert plan.events == []
    assert plan.requeue_after is None


def test_a_first_pass_writes_the_status_and_creates() -> None:
    plan = decide(2)
    assert plan.write_status
    assert plan.status.desired == 2
    assert plan.pool.creating == 2


# (case, seconds a change has waited, written now, comes back in)
THROTTLE_CASES = {
    "the first change of progress waits": (None, False, STATUS_DELAY_S),
    "held back a moment ago: waits the rest of the delay": (0.5, False, STATUS_DELAY_S - 0.5),
    "held back for the whole delay: written": (STATUS_DELAY_S, True, None),
}  # fmt: skip


@pytest.mark.parametrize(("held", "written", "back_in"), THROTTLE_CASES.values(),
                         ids=THROTTLE_CASES.keys())  # fmt: skip
def test_progress_counters_are_coalesced(
    held: float | None, written: bool, back_in: float | None
) -> None:
    # Filling: one of four Ready, three starting; the last write said two starting.
    pool = [inst("r")] + [inst(f"s{i}", P.BUILDING, age_s=2) for i in range(3)]
    before = settled(4, pool[:3])
    plan = decide(4, pool, previous=before, held_for=held)
    assert plan.write_status is written
    assert plan.hold_status is (not written)
    if back_in is None:
        assert plan.requeue_after is None or plan.requeue_after > STATUS_DELAY_S
    else:
        assert plan.requeue_after == pytest.approx(back_in)


def test_a_settled_end_state_is_never_held_back() -> None:
    filling = settled(2, [inst("a"), inst("b", P.BUILDING, age_s=2)])
    plan = decide(2, [inst("a"), inst("b")], previous=filling, held_for=0.1)
    assert plan.write_status
    assert not plan.hold_status
    assert plan.status.ready == 2


def test_a_claims_refill_costs_one_status_write_when_it_is_quick() -> None:
    # A full pool; a claim takes one: Ready turns False and Progressing True,
    # which waits; the replacement is Ready before the delay is over: only the
    # end state (one more claimed) is written.
    full = settled(2, [inst("a"), inst("b")])
    taken = [inst("a"), inst("b", claimed=True)]
    after_claim = decide(2, taken, previous=full)
    assert after_claim.status.ready == 1
    assert not after_claim.write_status
    assert after_claim.hold_status
    assert after_claim.pool.creating == 1
    refilled = decide(2, [*taken, inst("c")], previous=full, held_for=0.5)
    assert refilled.write_status
    assert (refilled.status.ready, refilled.status.claimed) == (2, 1)


def test_the_first_status_and_problems_are_never_held_back() -> None:
    assert decide(4, held_for=None).write_status  # the first status: the preset is seen
    filling = settled(4, [inst("r"), inst("s", P.BUILDING, age_s=2)])
    limited = decide(4, [inst("r"), inst("s", P.FAILED)], previous=filling, failure=HARD_LIMITED)
    assert limited.status.prebuild_status is PrebuildStatus.HARD_LIMITED
    assert limited.write_status


def test_waiting_for_the_global_create_cap_is_progress_not_an_end_state() -> None:
    # Three Ready of ten, nothing starting: the operator-wide cap is spent by others.
    filling = settled(10, [inst("r0"), inst("r1"), inst("s", P.BUILDING, age_s=2)])
    pool = [inst("r0"), inst("r1"), inst("r2")]
    plan = decide(10, pool, previous=filling, others_starting=KNOBS.max_creates_global)
    assert plan.pool.creating == 0
    assert plan.status.ready == 3
    assert not plan.write_status
    assert plan.hold_status


def test_hard_limited_notices_every_pass_but_not_without_the_ledger() -> None:
    assert decide(2, failure=HARD_LIMITED).notify_hard_limit
    limited = settled(2, failure=HARD_LIMITED)
    again = decide(2, previous=limited, failure=HARD_LIMITED)
    assert again.notify_hard_limit  # the warning log is due on every loop
    assert again.events == []  # the transition's Events went out once
    down = decide(2, previous=limited, failure=HARD_LIMITED, ledger_available=False)
    assert not down.notify_hard_limit
    assert down.requeue_after == LEDGER_DOWN_RETRY_S


def test_leaving_the_hard_limit_says_so_once() -> None:
    limited = settled(2, failure=HARD_LIMITED)
    assert limited.prebuild_status is PrebuildStatus.HARD_LIMITED
    plan = decide(2, previous=limited, failure=CLEAN)
    assert [e.reason for e in plan.events] == [reasons.REASON_HARD_LIMIT_RESET]
    assert plan.pool.creating == 2


def test_the_requeue_is_the_earliest_of_every_reason() -> None:
    # A Pending workspace shows Building after BUILDING_AFTER; the ledger is down.
    plan = decide(1, [inst("p", P.PENDING, age_s=1)], ledger_available=False)
    pending_due = (BUILDING_AFTER - timedelta(seconds=1)).total_seconds() + 0.5
    assert plan.requeue_after == pytest.approx(min(pending_due, LEDGER_DOWN_RETRY_S))


def tracked(name: str, view: Any = None, phase: P = P.PENDING) -> TrackedWorkspace:
    return TrackedWorkspace(name, f"uid-{name}", "7", inst(name, phase), view)


def test_first_round_acts_only_on_unclaimed_live_workspaces_with_something_to_do() -> None:
    workspaces = [
        tracked("turning-ready", ws(P.PENDING, pod=pod(ready=True))),
        tracked("no-pod-yet", ws(P.PENDING, pod=None)),
        tracked("steady", ws(P.READY, pod=pod(ready=True)), P.READY),
        tracked("claimed-or-expected"),  # no view: the first round leaves it alone
    ]
    actions = decide_workspaces(workspaces, NOW, timedelta(minutes=5), 3).actions
    steps = {a.workspace.name: a.step.step for a in actions}
    assert steps == {
        "turning-ready": Step.WRITE,
        "no-pod-yet": Step.CREATE_POD,
        "steady": Step.KEEP,  # kept in the list: its remembered write is forgotten
    }


def test_the_second_round_sees_what_the_first_wrote() -> None:
    (action,) = decide_workspaces(
        [tracked("w", ws(P.PENDING, pod=pod(ready=True)))], NOW, timedelta(minutes=5), 3
    ).actions
    after = instance_after(action.workspace.instance, action.step, NOW)
    assert (after.phase, after.ready_at) == (P.READY, NOW)
    # Ready now, so the pool of one is full: nothing to create.
    assert decide(1, [after]).pool.creating == 0
    assert decide(1, [action.workspace.instance]).pool.creating == 0  # starting counts too


def test_a_schedule_change_ahead_brings_the_pass_back_for_it() -> None:
    status = settled(2, [inst("a"), inst("b")])
    plan = decide_preset(
        PresetSnapshot(
            name="p",
            generation=1,
            previous=status,
            stored_status=status_patch(status),
            pool=snap(2, [inst("a"), inst("b")]),
            schedule_wakeup=42.5,
        ),
        KNOBS,
    )
    assert plan.requeue_after == 42.5


def test_the_first_round_returns_each_workspaces_deadline() -> None:
    building = tracked("b", ws(P.BUILDING, pod=pod(ready=False, age_s=60)), P.BUILDING)
    first = decide_workspaces([building], NOW, timedelta(minutes=5), 3)
    assert [a.step.step for a in first.actions] == [Step.KEEP]  # nothing to write
    assert first.deadlines  # but time alone will change it: the pass must come back


def test_the_preset_says_what_its_starting_workspaces_wait_for() -> None:
    waiting = [replace(inst(f"u{i}", P.BUILDING), waiting="Unschedulable") for i in range(2)] + [
        replace(inst("c", P.BUILDING), waiting="ContainerCreating")
    ]
    status = decide(3, waiting).status
    ready = {c.type: c for c in status.conditions}["Ready"]
    assert ready.status == "False"
    assert ready.reason == "Unschedulable"  # what most of them wait for
    assert "waiting: 1 ContainerCreating, 2 Unschedulable" in ready.message


def test_demand_mode_shows_in_the_status_and_brings_the_pass_back_for_its_next_read() -> None:
    auto = AutoscaleStatus(decided_by="Autoscale", reason="Demand", recommended=2)
    pool = [inst("a"), inst("b")]
    status = settled(2, pool)

    def with_auto(previous: PresetStatus, autoscale: AutoscaleStatus | None) -> PresetPlan:
        return decide_preset(
            PresetSnapshot(
                name="p",
                generation=1,
                previous=previous,
                stored_status=status_patch(previous),
                pool=snap(2, pool),
                autoscale=autoscale,
                autoscale_wakeup=None if autoscale is None else 60.5,
            ),
            KNOBS,
        )

    on = with_auto(status, auto)
    assert on.status.autoscale == auto
    assert on.write_status
    assert on.requeue_after == 60.5
    off = with_auto(on.status, None)  # autoscale removed from the spec
    assert off.status.autoscale is None
    assert off.write_status
    assert status_patch(off.status)["autoscale"] is None  # the merge patch removes it
