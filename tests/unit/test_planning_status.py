from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from prewarm.api.preset import LastFailure, PrebuildStatus, PresetStatus
from prewarm.api.workspace import WorkspacePhase
from prewarm.planning.pool import Instance, PoolInput, plan_pool
from prewarm.planning.preset_status import (
    FailureSummary,
    StatusInput,
    can_wait,
    compute_status,
    status_as_known,
    status_equal,
    status_patch,
    transition_events,
)
from prewarm.planning.schedule import ScheduleProblem

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CLEAN = FailureSummary(False, 3, 0, False, None, None, None)
LIMITED = FailureSummary(
    True, 3, 3, False, None, None, LastFailure(reason="PodFailed", message="exit 1", time=NOW)
)


def _input(failure: FailureSummary = CLEAN, now: datetime = NOW, desired: int = 2) -> StatusInput:
    plan = plan_pool(PoolInput(desired=desired, template_hash="h", instances=[], now=now))
    return StatusInput("p", 1, "h", plan, failure, False, None, None, now)


def _conditions(status: PresetStatus) -> dict[str, str]:
    return {c.type: c.status.value for c in status.conditions}


def test_a_converged_status_compares_equal_so_no_write_is_needed() -> None:
    first = compute_status(PresetStatus(), _input())
    stored = status_patch(first)
    later = compute_status(
        PresetStatus.model_validate(stored), _input(now=NOW + timedelta(hours=1))
    )
    assert status_equal(stored, later)
    assert [c.last_transition_time for c in later.conditions] == [
        c.last_transition_time for c in first.conditions
    ]


def test_hard_limit_shows_in_status_and_conditions() -> None:
    status = compute_status(PresetStatus(), _input(LIMITED))
    assert status.prebuild_status is PrebuildStatus.HARD_LIMITED
    assert _conditions(status)["HardLimited"] == "True"
    message = next(c.message for c in status.conditions if c.type == "HardLimited")
    assert "PodFailed" in message
    assert "prewarm.dev/retry" in message


def test_events_only_on_transitions() -> None:
    validation = FailureSummary(False, 3, 0, True, "rejected: bad name", None, None)
    before = compute_status(PresetStatus(), _input())
    after = compute_status(before, _input(validation))
    events = transition_events(before, after, validation)
    assert [(e.type, e.reason) for e in events] == [("Warning", "ValidationFailed")]
    assert "bad name" in events[0].message
    assert transition_events(after, compute_status(after, _input(validation)), validation) == []


def test_leaving_the_hard_limit_posts_a_reset_event() -> None:
    limited = compute_status(PresetStatus(), _input(LIMITED))
    normal = compute_status(limited, _input())
    assert [e.reason for e in transition_events(limited, normal, CLEAN)] == ["HardLimitReset"]


def test_backoff_in_the_past_is_not_published() -> None:
    past = FailureSummary(False, 3, 1, False, None, NOW - timedelta(seconds=1), None)
    assert compute_status(PresetStatus(), _input(past)).backoff_until is None
    future = FailureSummary(False, 3, 1, False, None, NOW + timedelta(seconds=30), None)
    assert compute_status(PresetStatus(), _input(future)).backoff_until == NOW + timedelta(
        seconds=30
    )


def test_selector_is_published_for_the_scale_subresource() -> None:
    assert compute_status(PresetStatus(), _input()).selector == "prewarm.dev/preset=p"


def _filling(ready: int, starting: int, failure: FailureSummary = CLEAN) -> StatusInput:
    instances = [
        Instance(f"w{i}", "h", WorkspacePhase.READY if i < ready else WorkspacePhase.PENDING, NOW)
        for i in range(ready + starting)
    ]
    plan = plan_pool(
        PoolInput(desired=ready + starting, template_hash="h", instances=instances, now=NOW)
    )
    return StatusInput("p", 1, "h", plan, failure, False, None, None, NOW)


def test_counters_moving_while_the_pool_fills_can_wait_for_the_next_write() -> None:
    stored = status_patch(compute_status(PresetStatus(), _filling(ready=1, starting=9)))
    later = compute_status(PresetStatus.model_validate(stored), _filling(ready=4, starting=6))
    assert not status_equal(stored, later)
    assert can_wait(stored, later)


def test_a_new_generation_is_written_at_once_even_while_filling() -> None:
    stored = status_patch(compute_status(PresetStatus(), _filling(ready=1, starting=9)))
    newer = replace(_filling(ready=2, starting=8), generation=2)
    assert not can_wait(stored, compute_status(PresetStatus.model_validate(stored), newer))


def test_the_last_prebuild_ready_and_any_condition_change_are_written_at_once() -> None:
    stored = status_patch(compute_status(PresetStatus(), _filling(ready=9, starting=1)))
    previous = PresetStatus.model_validate(stored)
    assert not can_wait(stored, compute_status(previous, _filling(ready=10, starting=0)))
    limited = compute_status(previous, _filling(ready=1, starting=9, failure=LIMITED))
    assert not can_wait(stored, limited)


# Issue 12, item 10: a schedule problem is a condition, shows in STATUS and gets an Event.


def _with_schedule_problem(problem: ScheduleProblem | None) -> StatusInput:
    return replace(_input(), schedule_problem=problem)


NEVER = ScheduleProblem("CronNeverFires", "schedules[0].cron '0 0 31 2 *' can never fire")


def test_item10_a_schedule_problem_is_a_condition_and_the_summary() -> None:
    status = compute_status(PresetStatus(), _with_schedule_problem(NEVER))
    condition = next(c for c in status.conditions if c.type == "ScheduleInvalid")
    assert (condition.status.value, condition.reason) == ("True", "CronNeverFires")
    assert "0 0 31 2 *" in condition.message
    assert status.prebuild_status is PrebuildStatus.NORMAL
    assert status.summary == "ScheduleInvalid"
    fine = compute_status(status, _input())
    assert _conditions(fine)["ScheduleInvalid"] == "False"
    assert fine.summary == "Normal"


def test_item10_a_schedule_problem_gets_one_warning_event_per_problem() -> None:
    before = compute_status(PresetStatus(), _input())
    after = compute_status(before, _with_schedule_problem(NEVER))
    events = transition_events(before, after, CLEAN)
    assert [(e.type, e.reason) for e in events] == [("Warning", "InvalidSchedule")]
    assert "0 0 31 2 *" in events[0].message
    # Posted once per problem even if a pass runs before the watch shows the
    # condition: the Event's name comes from this key.
    assert events[0].once_key
    again = compute_status(after, _with_schedule_problem(NEVER))
    assert transition_events(after, again, CLEAN) == []
    other = ScheduleProblem("UnknownTimezone", "unknown timezone 'Mars/Olympus'")
    changed = compute_status(again, _with_schedule_problem(other))
    (other_event,) = transition_events(again, changed, CLEAN)
    assert other_event.reason == "InvalidSchedule"
    assert other_event.once_key != events[0].once_key


def test_item10_summary_shows_the_most_pressing_state() -> None:
    assert compute_status(PresetStatus(), _input(LIMITED)).summary == "HardLimited"
    limited = replace(_input(LIMITED), schedule_problem=NEVER)
    assert compute_status(PresetStatus(), limited).summary == "HardLimited"
    down = replace(_with_schedule_problem(NEVER), ledger_available=False)
    assert compute_status(PresetStatus(), down).summary == "Degraded"
    paused = replace(_input(), paused=True, paused_by="annotation")
    assert compute_status(PresetStatus(), paused).summary == "Paused"


def test_a_hard_limit_reset_seen_twice_through_a_lagging_watch_is_one_event() -> None:
    from datetime import UTC, datetime

    from prewarm.api.preset import LastFailure, PrebuildStatus, PresetStatus
    from prewarm.planning.preset_status import FailureSummary, transition_events

    def limited(at: int) -> PresetStatus:
        failed = LastFailure(
            reason="PodFailed", message="m", time=datetime(2026, 1, 1, 0, at, tzinfo=UTC)
        )
        return PresetStatus(template_hash="h", prebuild_status=PrebuildStatus.HARD_LIMITED,
                            last_failure=failed)  # fmt: skip

    normal = PresetStatus(template_hash="h", prebuild_status=PrebuildStatus.NORMAL)
    clean = FailureSummary(False, 3, 0, False, None, None, None)
    (first,) = transition_events(limited(1), normal, clean)
    (again,) = transition_events(limited(1), normal, clean)  # the same stale status
    (later,) = transition_events(limited(5), normal, clean)  # a new episode
    assert first.once_key == again.once_key
    assert later.once_key != first.once_key


def test_a_pass_the_watch_lags_behind_sees_the_status_it_wrote_last() -> None:
    watched = {"prebuildStatus": "Normal"}
    written = ("41", {"prebuildStatus": "ValidationFailed"})
    # The watch still shows version 41, which the last write went over.
    assert status_as_known("41", watched, written) == written[1]
    # A newer version: the watch caught up (or someone else wrote); trust it.
    assert status_as_known("42", watched, written) is watched
    assert status_as_known("41", watched, None) is watched
    assert status_as_known("", watched, ("", {})) is watched  # no version known: the watch
