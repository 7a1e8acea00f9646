from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prewarm.api.claim import ClaimPhase, OnWorkspaceLost
from prewarm.api.preset import PrebuildStatus
from prewarm.api.workspace import WorkspacePhase
from prewarm.planning.claims import (
    COLD_BUILD_WATCH_S,
    LEASE_HOLD_S,
    WAIT_POLL_S,
    Action,
    ClaimRoute,
    Follow,
    Held,
    Kept,
    PresetView,
    Route,
    check_bound,
    claim_deadline,
    claim_route,
    decide_claim,
    eligible,
    follow_own_workspace,
    held,
)
from prewarm.planning.failures import PodView
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


TIMEOUT = timedelta(minutes=5)


def _pod(phase: str = "Running", ready: bool = True) -> PodView:
    return PodView(phase=phase, created_at=NOW - timedelta(seconds=30), ready=ready)


# (case, (phase, generation, age_s, pod, preset known), action, requeue_after)
FOLLOW_CASES = {
    "a take interrupted after the workspace write: finish it": (
        (WorkspacePhase.CLAIMED, 2, 60, _pod(), True), Follow.FINISH_TAKE, None),
    "a Ready workspace with a generation was taken: finish it": (
        (WorkspacePhase.READY, 1, 60, _pod(), True), Follow.FINISH_TAKE, None),
    "a warm take interrupted before Bound (the take writes no status): finish it": (
        (WorkspacePhase.READY, 0, 60, _pod(), True), Follow.FINISH_TAKE, None),
    "a fresh cold workspace without pod: wait out the grace": (
        (WorkspacePhase.PENDING, 0, 2, None, True), Follow.WAIT, 3.0),
    "a cold workspace without pod past the grace: create it": (
        (WorkspacePhase.PENDING, 0, 60, None, True), Follow.CREATE_POD, None),
    "no preset to render the pod from: wait": (
        (WorkspacePhase.PENDING, 0, 60, None, False), Follow.WAIT, None),
    "the cold pod is not Ready yet: look again": (
        (WorkspacePhase.PENDING, 0, 60, _pod(ready=False), True), Follow.WAIT, 5.0),
    "the cold pod failed": (
        (WorkspacePhase.PENDING, 0, 60, _pod("Failed", False), True), Follow.FAIL, None),
    "the cold pod is Ready: bind": (
        (WorkspacePhase.PENDING, 0, 60, _pod(), True), Follow.BIND_COLD, None),
}  # fmt: skip


@pytest.mark.parametrize(("ws", "action", "requeue"), FOLLOW_CASES.values(),
                         ids=FOLLOW_CASES.keys())  # fmt: skip
def test_claim_follows_its_own_workspace(
    ws: tuple[WorkspacePhase, int, int, PodView | None, bool],
    action: Follow,
    requeue: float | None,
) -> None:
    phase, generation, age_s, pod, known = ws
    created = NOW - timedelta(seconds=age_s)
    step = follow_own_workspace(phase, generation, created, pod, known, NOW, TIMEOUT, 3)
    assert step.action is action
    assert step.requeue_after == requeue
    assert (step.outcome is not None) == (action is Follow.FAIL)
    if action is Follow.FINISH_TAKE:
        assert step.generation == max(generation, 1)
        assert step.write_pod  # none of these pods knows its generation


@pytest.mark.parametrize(
    ("pod", "annotated", "write_pod"),
    [
        (None, "", True),  # not in the watch yet: write, as the take would have
        (_pod(), "", True),  # the take was cut short before the annotations
        (_pod(), "1", True),  # an older generation's (a rebind's take)
        (_pod(), "2", False),  # the annotations were written: only Bound is missing
    ],
)
def test_a_take_cut_short_writes_the_pod_only_if_it_does_not_know_its_generation(
    pod: PodView | None, annotated: str, write_pod: bool
) -> None:
    created = NOW - timedelta(minutes=1)
    args = (WorkspacePhase.READY, 2, created, pod, True, NOW, TIMEOUT, 3)
    step = follow_own_workspace(*args, pod_generation=annotated)
    assert (step.action, step.generation, step.write_pod) == (Follow.FINISH_TAKE, 2, write_pod)


def test_a_waiting_claim_looks_again_soon_and_just_after_its_limit() -> None:
    forever = decide_claim(PresetView(False), [], waited=timedelta(days=1), wait_limit=None)
    assert forever.requeue_after == WAIT_POLL_S
    early = decide_claim(PresetView(False), [], waited=timedelta(0), wait_limit=LIMIT)
    assert early.requeue_after == WAIT_POLL_S
    near = decide_claim(
        PresetView(False), [], waited=LIMIT - timedelta(seconds=2), wait_limit=LIMIT
    )
    assert near.requeue_after == pytest.approx(2.1)  # back just after the limit, to fail it
    assert decide_claim(OK, [inst("a")]).requeue_after is None  # not waiting


def route(**kw: object) -> ClaimRoute:
    fields: dict[str, object] = {
        "exists": True,
        "may_act": True,
        "phase": ClaimPhase.PENDING,
        "bound_here": False,
        "carried": False,
        "cold_start_pending": False,
        **kw,
    }
    return claim_route(**fields)  # type: ignore[arg-type]


# (case, claim_route arguments, route, requeue)
ROUTE_CASES = {
    "gone: forget it": ({"exists": False}, Route.FORGET, None),
    "the lease is not fresh: hold, come back": ({"may_act": False}, Route.HOLD, LEASE_HOLD_S),
    "failed: done for good": ({"phase": ClaimPhase.FAILED}, Route.DONE, None),
    "bound: the follow-ups": ({"phase": ClaimPhase.BOUND}, Route.BOUND, None),
    "bound here, the watch lags: nothing twice": ({"bound_here": True}, Route.WATCH_LAGS, None),
    "a workspace carries it: follow that one": ({"carried": True}, Route.FOLLOW_OWN, None),
    "its cold build is not watched yet: never take a second": (
        {"cold_start_pending": True}, Route.WATCH_LAGS, COLD_BUILD_WATCH_S),
    "carried wins over a pending cold start": (
        {"carried": True, "cold_start_pending": True}, Route.FOLLOW_OWN, None),
    "expired: done for good": ({"phase": ClaimPhase.EXPIRED}, Route.DONE, None),
    "bound past its deadline: expire": (
        {"phase": ClaimPhase.BOUND, "expired": True}, Route.EXPIRE, None),
    "pending past shutdownAt: expire, build nothing": ({"expired": True}, Route.EXPIRE, None),
    "failed past its deadline stays failed": (
        {"phase": ClaimPhase.FAILED, "expired": True}, Route.DONE, None),
    "lost here, the watch still shows Bound: never lose it twice": (
        {"phase": ClaimPhase.BOUND, "lost_here": True}, Route.WATCH_LAGS, COLD_BUILD_WATCH_S),
    "new: take or build": ({}, Route.CLAIM_NEW, None),
    "no phase yet is new too": ({"phase": None}, Route.CLAIM_NEW, None),
}  # fmt: skip


@pytest.mark.parametrize(("kw", "expected", "requeue"), ROUTE_CASES.values(),
                         ids=ROUTE_CASES.keys())  # fmt: skip
def test_claim_route(kw: dict[str, object], expected: Route, requeue: float | None) -> None:
    decided = route(**kw)
    assert decided.route is expected
    assert decided.requeue_after == requeue


# --- after Bound (issue 16) ------------------------------------------------------------


# (case, whose the workspace is, pod there, policy, action, reason)
LOST_CASES = {
    "its own, pod there: keep": (Held.MINE, True, OnWorkspaceLost.REBIND, Kept.KEEP, ""),
    "still the pool's, pod there: the take comes now": (
        Held.FREE, True, OnWorkspaceLost.REBIND, Kept.FINISH_TAKE, ""),
    "workspace deleted, Rebind": (Held.GONE, False, OnWorkspaceLost.REBIND, Kept.REBIND,
                                  "WorkspaceDeleted"),
    "pod deleted, Rebind": (Held.MINE, False, OnWorkspaceLost.REBIND, Kept.REBIND, "PodDeleted"),
    "workspace deleted, Fail": (Held.GONE, False, OnWorkspaceLost.FAIL, Kept.FAIL,
                                "WorkspaceDeleted"),
    "pod deleted, Fail": (Held.MINE, False, OnWorkspaceLost.FAIL, Kept.FAIL, "PodDeleted"),
    "workspace gone, pod lingering: the workspace is what counts": (
        Held.GONE, True, OnWorkspaceLost.REBIND, Kept.REBIND, "WorkspaceDeleted"),
    "another claim's before the take, Rebind": (
        Held.UNAVAILABLE, True, OnWorkspaceLost.REBIND, Kept.REBIND, "WorkspaceUnavailable"),
    "another claim's before the take, Fail": (
        Held.UNAVAILABLE, True, OnWorkspaceLost.FAIL, Kept.FAIL, "WorkspaceUnavailable"),
    "still the pool's but its pod deleted: never the claim's to keep": (
        Held.FREE, False, OnWorkspaceLost.REBIND, Kept.REBIND, "PodDeleted"),
}  # fmt: skip


@pytest.mark.parametrize(("holder", "pod", "policy", "action", "reason"), LOST_CASES.values(),
                         ids=LOST_CASES.keys())  # fmt: skip
def test_a_bound_claim_notices_a_lost_workspace(
    holder: Held, pod: bool, policy: OnWorkspaceLost, action: Kept, reason: str
) -> None:
    step = check_bound("w1", holder, pod, policy, None, NOW)
    assert step.action is action
    assert step.reason == reason
    if action in (Kept.REBIND, Kept.FAIL):
        assert "w1" in step.message
        assert f"spec.onWorkspaceLost: {policy.value}" in step.message


def test_a_bound_claim_comes_back_just_after_its_deadline() -> None:
    step = check_bound("w1", Held.MINE, True, OnWorkspaceLost.REBIND, NOW + timedelta(hours=1), NOW)
    assert step.requeue_after == pytest.approx(3600.1)
    assert (
        check_bound("w1", Held.MINE, True, OnWorkspaceLost.REBIND, None, NOW).requeue_after is None
    )


# (case, deleting, claimRef uid, has an owner, Ready, whose)
HELD_CASES = {
    "its claimRef names the claim": (False, "c-1", True, True, Held.MINE),
    "its own cold build, not Ready yet": (False, "c-1", True, False, Held.MINE),
    "the pool's and Ready: the take did not land": (False, "", False, True, Held.FREE),
    "another claim's": (False, "c-2", True, True, Held.UNAVAILABLE),
    "an owner without a claimRef is not free": (False, "", True, True, Held.UNAVAILABLE),
    "the pool's, no longer Ready": (False, "", False, False, Held.UNAVAILABLE),
    "being deleted, even its own": (True, "c-1", True, True, Held.GONE),
}  # fmt: skip


@pytest.mark.parametrize(("deleting", "holder", "claimed", "ready", "expected"),
                         HELD_CASES.values(), ids=HELD_CASES.keys())  # fmt: skip
def test_whose_a_bound_claims_workspace_is(
    deleting: bool, holder: str, claimed: bool, ready: bool, expected: Held
) -> None:
    assert held("c-1", deleting, holder, claimed, ready) is expected


# (case, lifetime, shutdownAt, boundAt, deadline)
DEADLINE_CASES = {
    "neither: lives as long as the claim": (None, None, NOW, None),
    "lifetime counts from the first binding": (timedelta(hours=8), None, NOW,
                                               NOW + timedelta(hours=8)),
    "lifetime before binding: no deadline yet": (timedelta(hours=8), None, None, None),
    "shutdownAt applies unbound too": (None, NOW + timedelta(hours=1), None,
                                       NOW + timedelta(hours=1)),
    "the earlier wins (shutdownAt)": (timedelta(hours=8), NOW + timedelta(hours=1), NOW,
                                      NOW + timedelta(hours=1)),
    "the earlier wins (lifetime)": (timedelta(minutes=5), NOW + timedelta(hours=1), NOW,
                                    NOW + timedelta(minutes=5)),
}  # fmt: skip


@pytest.mark.parametrize(("lifetime", "shutdown", "bound", "deadline"), DEADLINE_CASES.values(),
                         ids=DEADLINE_CASES.keys())  # fmt: skip
def test_claim_deadline(
    lifetime: timedelta | None,
    shutdown: datetime | None,
    bound: datetime | None,
    deadline: datetime | None,
) -> None:
    assert claim_deadline(lifetime, shutdown, bound) == deadline


def test_a_fresh_claim_never_takes_a_warm_workspace() -> None:
    decision = decide_claim(OK, [inst("a"), inst("b")], fresh=True)
    assert decision.action is Action.COLD_START
    assert "spec.fresh" in decision.message
    # It still fails fast where a build is known to fail.
    limited = PresetView(True, "h", PrebuildStatus.HARD_LIMITED)
    assert decide_claim(limited, [inst("a")], fresh=True).action is Action.FAIL


GRACE = timedelta(seconds=20)


def test_grace_zero_keeps_todays_cold_start() -> None:
    starting = [inst("s", WorkspacePhase.BUILDING)]
    assert decide_claim(OK, starting).action is Action.COLD_START
    assert decide_claim(OK, starting, grace=timedelta(0)).action is Action.COLD_START


def test_grace_waits_for_a_starting_warm_workspace_then_takes_it() -> None:
    starting = [inst("s", WorkspacePhase.BUILDING), inst("p", WorkspacePhase.PENDING)]
    waiting = decide_claim(OK, starting, grace=GRACE, pending_for=timedelta(seconds=5))
    assert waiting.action is Action.WAIT
    assert waiting.reason == "WaitingForWarm"
    assert waiting.wait_left == timedelta(seconds=15)
    assert waiting.requeue_after == WAIT_POLL_S
    # The same claim a moment later: one became Ready within the grace.
    became_ready = [inst("s"), inst("p", WorkspacePhase.PENDING)]
    taken = decide_claim(OK, became_ready, grace=GRACE, pending_for=timedelta(seconds=6))
    assert taken.action is Action.TAKE_PREBUILT
    assert taken.candidates == ("s",)


def test_grace_over_or_nothing_starting_means_cold_start() -> None:
    starting = [inst("s", WorkspacePhase.BUILDING)]
    over = decide_claim(OK, starting, grace=GRACE, pending_for=GRACE)
    assert over.action is Action.COLD_START
    nothing = [
        inst("outdated", WorkspacePhase.BUILDING, h="old"),
        inst("taken", WorkspacePhase.BUILDING, claimed=True),
        inst("going", WorkspacePhase.BUILDING, deleting=True),
        inst("failed", WorkspacePhase.FAILED),
    ]
    assert decide_claim(OK, nothing, grace=GRACE).action is Action.COLD_START
    near = decide_claim(OK, starting, grace=GRACE, pending_for=GRACE - timedelta(seconds=1))
    assert near.requeue_after == pytest.approx(1.1)  # back just after the grace
    # A workspace another claim is taking is not waited for.
    reserved = decide_claim(OK, starting, frozenset({"s"}), grace=GRACE)
    assert reserved.action is Action.COLD_START


def test_grace_never_applies_to_fresh_claims_or_a_resumed_cold_build() -> None:
    starting = [inst("s", WorkspacePhase.BUILDING)]
    assert decide_claim(OK, starting, fresh=True, grace=GRACE).action is Action.COLD_START
    resumed = decide_claim(OK, starting, cold_build="p-c1", grace=GRACE)
    assert resumed.action is Action.COLD_START


def test_grace_counts_from_creation_unless_told_otherwise() -> None:
    starting = [inst("s", WorkspacePhase.BUILDING)]
    old = decide_claim(OK, starting, waited=timedelta(minutes=3), grace=GRACE)
    assert old.action is Action.COLD_START
    # A claim that lost its workspace a moment ago waits again (pending_for).
    rebinding = decide_claim(
        OK, starting, waited=timedelta(minutes=3), grace=GRACE, pending_for=timedelta(0)
    )
    assert rebinding.action is Action.WAIT


# Issue 16, per-claim parameters: the CRD cannot check them (they depend on
# the preset), so the decision does; a claim they do not fit fails at once.

BAD_PARAMETERS = "spec.parameters[cpus]: '3' is not one of '1', '2'"


@pytest.mark.parametrize(
    ("preset", "instances", "kw", "expected"),
    [
        # With a warm one ready, a claim whose parameters do not fit takes nothing.
        (OK, [inst("warm")], {}, (Action.FAIL, "InvalidParameters")),
        # Nor does it build one.
        (OK, [], {}, (Action.FAIL, "InvalidParameters")),
        (OK, [], {"fresh": True}, (Action.FAIL, "InvalidParameters")),
        # A missing Secret is not worth waiting for when the parameters already fail.
        (OK, [inst("warm")], {"secret_missing": "s"}, (Action.FAIL, "InvalidParameters")),
        # Without its preset there is nothing to check them against: it waits for it.
        (PresetView(False), [], {}, (Action.WAIT, "PresetNotFound")),
        # A cold build already started (with parameters that fitted then) is resumed.
        (OK, [], {"cold_build": "p-c1"}, (Action.COLD_START, "ColdStart")),
    ],
)
def test_parameters_that_do_not_fit_fail_the_claim_before_it_takes_anything(
    preset: PresetView,
    instances: list[Instance],
    kw: dict[str, object],
    expected: tuple[Action, str],
) -> None:
    decision = decide_claim(preset, instances, parameters_problem=BAD_PARAMETERS, **kw)  # type: ignore[arg-type]
    assert (decision.action, decision.reason) == expected
    assert decision.candidates == ()
    if decision.action is Action.FAIL:
        assert decision.message == BAD_PARAMETERS  # names the parameter


def test_parameters_that_fit_change_nothing() -> None:
    decision = decide_claim(OK, [inst("warm")], parameters_problem=None)
    assert (decision.action, decision.candidates) == (Action.TAKE_PREBUILT, ("warm",))
