"""The decisions of a preset pass beyond the pool planner (planning/preset_pass.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prewarm.api.preset import LastFailure, PrebuildStatus, PresetStatus
from prewarm.api.workspace import WorkspacePhase as P
from prewarm.planning.failures import ContainerState, PodView
from prewarm.planning.pool import Blocker, Instance
from prewarm.planning.preset_pass import (
    CLAIMS_FIRST_RETRY_S,
    LEDGER_DOWN_RETRY_S,
    PoolKnobs,
    PoolSnapshot,
    Step,
    WorkspaceView,
    decide_pool,
    ledger_down_failure,
    next_wakeup,
    workspace_step,
)
from prewarm.planning.preset_status import FailureSummary
from prewarm.planning.quota import QuotaHold
from prewarm.planning.schedule import DesiredCount

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
H = "h1"
CLEAN = FailureSummary(False, 3, 0, False, None, None, None)
KNOBS = PoolKnobs(
    max_instances_per_preset=500, max_creates_per_preset=20, max_creates_global=200, hard_limit=3
)


def inst(name: str, phase: P = P.READY, claimed: bool = False, age_s: int = 60) -> Instance:
    created = NOW - timedelta(seconds=age_s)
    ready = created + timedelta(seconds=1) if phase is P.READY else None
    return Instance(name, H, phase, created, ready_at=ready, claimed=claimed)


def snap(want: int, instances: list[Instance] | None = None, **kw: object) -> PoolSnapshot:
    return PoolSnapshot(
        template_hash=H,
        instances=instances or [],
        wanted=DesiredCount(want),
        failure=kw.pop("failure", CLEAN),  # type: ignore[arg-type]
        now=NOW,
        **kw,  # type: ignore[arg-type]
    )


# (case, snapshot, knobs, creating, blocked_by)
BUDGET_CASES = {
    "empty pool, unproven template: slow start allows hard_limit": (
        snap(10), KNOBS, 3, Blocker.CREATE_BUDGET),
    "slow start counts failures so far": (
        snap(10, failure=FailureSummary(False, 3, 2, False, None, None, None)), KNOBS, 1,
        Blocker.CREATE_BUDGET),
    "slow start counts attempts in flight": (
        snap(10, [inst("s", P.BUILDING)]), KNOBS, 2, Blocker.CREATE_BUDGET),
    "a proven template fills up to the per-preset cap": (
        snap(30, [inst("r")]), KNOBS, 20, Blocker.CREATE_BUDGET),
    "hard limit 0 disables slow start": (
        snap(10), PoolKnobs(500, 20, 200, 0), 10, None),
    "the operator-wide cap is shared with other presets": (
        snap(30, [inst("r")], others_starting=195), KNOBS, 5, Blocker.CREATE_BUDGET),
    "claimed cold starts never eat the budget": (
        snap(6, [inst("r")] + [inst(f"c{i}", P.PENDING, claimed=True) for i in range(25)]),
        KNOBS, 5, None),
    "the operator's cap clamps the count": (
        snap(900, [inst("r")]), PoolKnobs(4, 20, 200, 3), 3, None),
}  # fmt: skip


@pytest.mark.parametrize(("inp", "knobs", "creating", "blocked"), BUDGET_CASES.values(),
                         ids=BUDGET_CASES.keys())  # fmt: skip
def test_create_budget_and_slow_start(
    inp: PoolSnapshot, knobs: PoolKnobs, creating: int, blocked: Blocker | None
) -> None:
    decision = decide_pool(inp, knobs)
    assert decision.creating == creating
    assert decision.plan.blocked_by is blocked
    assert decision.requeue_after is None


def test_the_operators_cap_is_said_in_the_status_note() -> None:
    decision = decide_pool(snap(900, [inst("r")]), PoolKnobs(4, 20, 200, 3))
    assert decision.plan.counts.desired == 4
    assert decision.desired_note == "asked for 900, capped at 4 by the operator"
    problem = DesiredCount(2, problem="unknown timezone 'Mars/Base'")
    noted = decide_pool(PoolSnapshot(H, [inst("r")], problem, CLEAN, NOW), KNOBS)
    assert noted.desired_note == "unknown timezone 'Mars/Base'"


@pytest.mark.parametrize(
    ("operator", "annotation", "expected"),
    [(True, False, "operator"), (True, True, "operator"), (False, True, "annotation"),
     (False, False, None)],
)  # fmt: skip
def test_pause_sources(operator: bool, annotation: bool, expected: str | None) -> None:
    knobs = PoolKnobs(500, 20, 200, 3, operator_paused=operator)
    decision = decide_pool(snap(5, [inst("r")], paused_by_annotation=annotation), knobs)
    assert decision.paused_by == expected
    assert decision.creating == (0 if expected else 4)


def test_claims_first_defers_creates_and_comes_back_soon() -> None:
    decision = decide_pool(snap(5, [inst("r")], claims_busy=True), KNOBS)
    assert decision.plan.create == 4
    assert decision.creating == 0
    assert decision.requeue_after == CLAIMS_FIRST_RETRY_S


def test_ledger_down_creates_nothing_keeps_the_last_state_and_retries() -> None:
    previous = PresetStatus(
        prebuild_status=PrebuildStatus.HARD_LIMITED,
        last_failure=LastFailure(reason="CrashLoop", message="m", time=NOW),
    )
    failure = ledger_down_failure(previous, 3, None)
    assert failure.hard_limited
    assert failure.last_failure == previous.last_failure
    assert not failure.validation_failed
    assert ledger_down_failure(PresetStatus(), 3, "rejected").validation_failed
    decision = decide_pool(
        snap(5, [inst("r")], failure=ledger_down_failure(PresetStatus(), 3, None),
             ledger_available=False), KNOBS)  # fmt: skip
    assert decision.creating == 0
    assert decision.plan.blocked_by is Blocker.LEDGER_UNAVAILABLE
    assert decision.requeue_after == LEDGER_DOWN_RETRY_S


def test_a_full_quota_holds_creates_until_its_retry_and_is_dropped_when_nothing_waits() -> None:
    hold = QuotaHold("exceeded quota: q", 1, NOW + timedelta(seconds=5))
    held = decide_pool(snap(5, [inst("r")], quota=hold), KNOBS)
    assert held.creating == 0
    assert held.plan.blocked_by is Blocker.QUOTA_EXCEEDED
    assert held.requeue_after == 5
    assert held.keep_quota_hold
    over = QuotaHold("exceeded quota: q", 1, NOW - timedelta(seconds=1))
    waiting = decide_pool(snap(2, [inst("r"), inst("p", P.PENDING)], quota=over), KNOBS)
    assert waiting.keep_quota_hold, "a Pending workspace still waits for its pod"
    settled = decide_pool(snap(1, [inst("r")], quota=over), KNOBS)
    assert not settled.keep_quota_hold


def test_starved_only_by_the_operator_wide_cap() -> None:
    starved = decide_pool(snap(30, [inst("r")], others_starting=200), KNOBS)
    assert starved.creating == 0
    assert starved.waiting_for_global_room
    own_cap = decide_pool(snap(30, [inst("r")]), KNOBS)
    assert own_cap.plan.blocked_by is Blocker.CREATE_BUDGET
    assert not own_cap.waiting_for_global_room


def test_next_wakeup_is_the_nearest_deadline() -> None:
    assert next_wakeup([inst("r")], CLEAN, None, [], NOW) is None
    pending = inst("p", P.PENDING, age_s=2)  # shows Building 5 s after creation
    assert next_wakeup([pending], CLEAN, None, [], NOW) == 3.5
    ttl = next_wakeup([inst("r", age_s=60)], CLEAN, timedelta(minutes=1), [], NOW)
    assert ttl == 1.5  # Ready 59 s ago
    backoff = FailureSummary(False, 3, 1, False, None, NOW + timedelta(seconds=15), None)
    assert next_wakeup([], backoff, None, [], NOW) == 15.5
    claimed = inst("c", P.PENDING, claimed=True, age_s=1)
    assert next_wakeup([claimed], CLEAN, None, [], NOW) is None
    # A workspace's own deadline (workspace_step's `due`), past ones ignored.
    due = [NOW + timedelta(seconds=40), NOW - timedelta(seconds=1)]
    assert next_wakeup([inst("b", P.BUILDING)], CLEAN, None, due, NOW) == 40.5


def pod(phase: str = "Running", ready: bool = True, age_s: int = 60, **kw: object) -> PodView:
    created = NOW - timedelta(seconds=age_s)
    fields: dict[str, object] = {"scheduled_at": created, **kw}
    return PodView(phase=phase, created_at=created, ready=ready, **fields)  # type: ignore[arg-type]


def started(age_s: int, ready: bool = False) -> PodView:
    """A pod whose containers started `age_s` ago."""
    return pod(
        ready=ready,
        age_s=age_s,
        containers=(ContainerState("ws", started_at=NOW - timedelta(seconds=age_s)),),
    )


def ws(phase: P = P.PENDING, age_s: int = 60, **kw: object) -> WorkspaceView:
    fields: dict[str, object] = {"current": True, "pod": pod(), **kw}
    return WorkspaceView(phase, NOW - timedelta(seconds=age_s), **fields)  # type: ignore[arg-type]


TIMEOUT = timedelta(minutes=5)
# (case, workspace, step, phase)
STEP_CASES = {
    "a failed workspace stays as it is": (ws(P.FAILED, pod=None), Step.KEEP, None),
    "a disrupted one too": (ws(P.DISRUPTED, pod=None), Step.KEEP, None),
    "no pod yet, created here: wait for the watch": (
        ws(pod=None, pod_expected=True), Step.KEEP, None),
    "no pod and none expected: create it": (ws(pod=None), Step.CREATE_POD, None),
    "no pod, outdated: never create one": (ws(pod=None, current=False), Step.KEEP, None),
    "no pod under a full quota: wait for the retry": (
        ws(pod=None, quota_held=True), Step.KEEP, None),
    "pod Ready: write Ready": (ws(), Step.WRITE, P.READY),
    "already Ready": (ws(P.READY), Step.KEEP, None),
    "written here on this version: assume it": (ws(written=P.READY), Step.ASSUME, P.READY),
    "a young pod not Ready stays Pending (no Building write)": (
        ws(age_s=2, pod=pod(ready=False, age_s=2)), Step.KEEP, None),
    "an older pod not Ready shows Building": (
        ws(pod=pod(ready=False)), Step.WRITE, P.BUILDING),
    "Building and still waiting for the same thing: nothing to write": (
        ws(P.BUILDING, pod=pod(ready=False, age_s=60, scheduled_at=None), waiting="Unscheduled"),
        Step.KEEP, None),
    "Building but now waiting for something else: write it": (
        ws(P.BUILDING, pod=started(60), waiting="Unscheduled"), Step.WRITE, P.BUILDING),
    "containers started past the readiness timeout: failed": (
        ws(P.BUILDING, age_s=400, pod=started(301)), Step.WRITE, P.FAILED),
    "scheduled long ago but the image is still pulling: not yet": (
        ws(P.BUILDING, age_s=400, pod=pod(ready=False, age_s=400)), Step.KEEP, None),
    "the pod of a Ready workspace went away: disrupted": (
        ws(P.READY, pod=None), Step.WRITE, P.DISRUPTED),
    "the pod is being deleted: disrupted": (
        ws(P.READY, pod_deleting=True), Step.WRITE, P.DISRUPTED),
    "Ready before, not Ready for a moment: Building, not failed": (
        ws(P.READY, was_ready=True, pod=pod(
            ready=False, ready_changed_at=NOW - timedelta(seconds=30))),
        Step.WRITE, P.BUILDING),
    "Ready before, not Ready for the readiness timeout: disrupted": (
        ws(P.BUILDING, was_ready=True, waiting="NotReady", pod=pod(
            ready=False, ready_changed_at=NOW - timedelta(seconds=300))),
        Step.WRITE, P.DISRUPTED),
}  # fmt: skip


@pytest.mark.parametrize(("view", "step", "phase"), STEP_CASES.values(), ids=STEP_CASES.keys())
def test_workspace_phase_transitions(view: WorkspaceView, step: Step, phase: P | None) -> None:
    decided = workspace_step(view, NOW, TIMEOUT, crashloop_restarts=3)
    assert decided.step is step
    assert decided.phase is phase
    assert (decided.outcome is not None) == (step is Step.WRITE)


def test_a_phase_seen_in_the_watch_is_no_longer_remembered() -> None:
    assert workspace_step(ws(P.READY), NOW, TIMEOUT, 3).forget_written


def test_a_refused_workspace_create_holds_creates_until_its_retry() -> None:
    """Issue 15: a PrebuiltWorkspace create the API server refuses was retried
    every 5 s forever; now the preset waits (doubling) and says why."""
    hold = QuotaHold("denied by policy no-prebuilds", 1, NOW + timedelta(seconds=5))
    held = decide_pool(snap(2, create_refusal=hold), KNOBS)
    assert held.creating == 0
    assert held.plan.blocked_by is Blocker.CREATE_REFUSED
    assert held.requeue_after == 5.0
    over = decide_pool(snap(2, create_refusal=QuotaHold("x", 1, NOW - timedelta(seconds=1))), KNOBS)
    assert over.creating == 2  # the retry time passed: try again
