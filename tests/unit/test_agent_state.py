"""The agent's state machine: (recorded state, observed generation) -> action."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prewarm.agent.state import (
    AgentState,
    Exhausted,
    Idle,
    Report,
    RunHook,
    StateStore,
    decide,
)


def test_in_the_pool_nothing_happens() -> None:
    assert decide(AgentState(), None) == Idle()
    assert decide(AgentState(), 0) == Idle()


def test_a_new_generation_runs_the_hook() -> None:
    assert decide(AgentState(), 1, "alice") == RunHook(1, "alice", resumed=False, attempt=1)


def test_the_same_generation_again_does_nothing() -> None:
    """Coder's #26548: a reconnect/resync that sees the done generation must not re-init."""
    state = AgentState(done=3, reported=3, attempt_generation=3, attempts=1)
    assert decide(state, 3, "x", pod_reported=3) == Idle()
    assert decide(state, 2, "x", pod_reported=3) == Idle()  # a stale observation


def test_done_but_not_reported_is_reported_not_rerun() -> None:
    state = AgentState(done=2, reported=1, attempt_generation=2, attempts=1)
    assert decide(state, 2) == Report(2)
    assert decide(state, None) == Report(2)  # even before any observation


def test_pod_lagging_behind_is_reported_again() -> None:
    state = AgentState(done=2, reported=2, attempt_generation=2, attempts=1)
    assert decide(state, 2, pod_reported=1) == Report(2)
    assert decide(state, 2, pod_reported=0) == Report(2)
    assert decide(state, 2, pod_reported=2) == Idle()
    assert decide(state, 2, pod_reported=None) == Idle()


def test_a_newer_generation_wins_over_a_pending_report() -> None:
    state = AgentState(done=1, reported=0, attempt_generation=1, attempts=1)
    assert decide(state, 2, "bob") == RunHook(2, "bob", resumed=False, attempt=1)


def test_interrupted_run_is_resumed() -> None:
    state = AgentState(done=1, reported=1, attempt_generation=2, attempts=1, running=True)
    assert decide(state, 2, "bob") == RunHook(2, "bob", resumed=True, attempt=2)


def test_failed_run_is_retried_not_resumed() -> None:
    state = AgentState(attempt_generation=2, attempts=1, running=False, last_error="exit status 3")
    assert decide(state, 2, "bob") == RunHook(2, "bob", resumed=False, attempt=2)


def test_attempts_are_bounded() -> None:
    state = AgentState(attempt_generation=2, attempts=3, last_error="exit status 3")
    assert decide(state, 2, max_attempts=3) == Exhausted(2, "exit status 3")
    # A crash loop inside the hook is bounded too.
    crashing = AgentState(attempt_generation=2, attempts=3, running=True)
    assert decide(crashing, 2, max_attempts=3) == Exhausted(2, "interrupted")
    # ...and a newer generation starts afresh.
    assert decide(state, 3, "c", max_attempts=3) == RunHook(3, "c", resumed=False, attempt=1)


def test_exhausted_newer_generation_still_reports_the_done_one() -> None:
    state = AgentState(done=1, reported=0, attempt_generation=2, attempts=3, last_error="e")
    assert decide(state, 2, max_attempts=3) == Report(1)


def test_transitions() -> None:
    s = AgentState().started(1)
    assert (s.attempt_generation, s.attempts, s.running) == (1, 1, True)
    s = s.failed(1, "exit status 1")
    assert (s.running, s.last_error) == (False, "exit status 1")
    s = s.started(1)
    assert (s.attempts, s.running, s.last_error) == (2, True, "")
    s = s.completed(1, "alice")
    assert (s.done, s.done_owner, s.running) == (1, "alice", False)
    s = s.report_recorded(1)
    assert s.reported == 1
    s = s.started(2)
    assert (s.attempt_generation, s.attempts) == (2, 1)
    with pytest.raises(AssertionError):
        s.completed(1, "x")


@given(
    done=st.integers(0, 20),
    observed=st.integers(0, 20),
    running=st.booleans(),
    attempts=st.integers(0, 5),
)
def test_only_a_greater_generation_ever_runs(
    done: int, observed: int, running: bool, attempts: int
) -> None:
    state = AgentState(done=done, reported=done, attempt_generation=done, attempts=attempts)
    action = decide(state, observed, "o", pod_reported=done)
    if isinstance(action, RunHook):
        assert action.generation == observed > done
    elif observed <= done:
        assert action == Idle()


def test_simulated_crash_at_every_step_runs_each_generation_once(tmp_path: Path) -> None:
    """Drive decide + transitions through the real store, 'crashing' (reloading from
    disk) at a chosen step: 1 = while the hook runs, 2 = after the patch but before
    recording it. Each generation completes once; only a crash in the hook re-runs it,
    resumed."""
    store = StateStore(tmp_path, "agent")
    runs: list[tuple[int, bool]] = []
    reports: list[int] = []
    plan = {1: 0, 2: 1, 3: 2, 4: 1, 6: 2, 7: 0}  # generation -> crash step (0 = none)
    for generation, crash_step in plan.items():
        steps = 0
        while True:
            state = store.load()  # every iteration is a (re)start
            pod = max(reports, default=0)
            action = decide(state, generation, "o", pod_reported=pod)
            if isinstance(action, Idle):
                break
            steps += 1
            crash = steps == crash_step
            if isinstance(action, RunHook):
                store.save(state.started(generation))
                runs.append((action.generation, action.resumed))
                if not crash:
                    store.save(store.load().completed(generation, "o"))
            elif isinstance(action, Report):
                reports.append(action.generation)
                if not crash:
                    store.save(state.report_recorded(action.generation))
            else:
                pytest.fail(f"unexpected {action}")
        assert store.load().done == generation
        assert reports[-1] == generation
    assert [g for g, resumed in runs if not resumed] == list(plan)
    assert [g for g, resumed in runs if resumed] == [2, 4]
    assert reports == [1, 2, 3, 3, 4, 6, 6, 7]


def test_store_round_trip_and_atomicity(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state", "prewarm-agent")
    assert store.load() == AgentState()
    state = AgentState(done=4, done_owner="x", reported=3, attempt_generation=4, attempts=2)
    store.save(state)
    assert store.load() == state
    assert store.path.name == "state-prewarm-agent.json"
    assert [p.name for p in store.directory.iterdir()] == [store.path.name]  # no temp left
    # Unknown fields (a newer agent's) are ignored, missing ones default.
    store.path.write_text(json.dumps({"done": 2, "future": True}))
    assert store.load() == AgentState(done=2)


def test_stores_of_two_agent_containers_are_separate(tmp_path: Path) -> None:
    a, b = StateStore(tmp_path, "a"), StateStore(tmp_path, "b")
    a.save(AgentState(done=1))
    assert b.load() == AgentState()
    assert oct(os.stat(a.path).st_mode & 0o777) in ("0o600", "0o644")
