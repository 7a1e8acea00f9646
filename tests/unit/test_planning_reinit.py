"""Issue 17: what a Bound claim's Reinitialized condition says, from its pod's agents."""

from __future__ import annotations

import pytest

from prewarm.api import reasons
from prewarm.api.agent_protocol import (
    MAX_OUTPUT_TAIL,
    HookFailure,
    failed_value,
    parse_failed,
    reinit_output_annotation,
)
from prewarm.planning.reinit import (
    AFTER_GIVING_UP,
    MAX_EVENT_OUTPUT,
    ReinitCondition,
    reinit_condition,
    reinit_pending,
    reinit_progress,
)

AGENTS = {"prewarm.dev/agents": "a,b"}


def _failure(container: str, g: int, attempt: int, gave_up: bool, timed_out: bool = False,
             output: str = "boom") -> dict[str, str]:  # fmt: skip
    reason = "timed out after 5s" if timed_out else "exit status 3"
    return {
        f"prewarm.dev/reinit-failed.{container}": failed_value(
            g, reason, attempt if gave_up else 0
        ),
        reinit_output_annotation(container): HookFailure(
            g, attempt, 3, timed_out, output
        ).to_annotation(),
    }


def _cond(annotations: dict[str, str], generation: int) -> ReinitCondition:
    progress = reinit_progress(annotations, generation)
    assert progress is not None
    return reinit_condition(progress, generation)


def test_a_claim_is_reinitialized_once_every_agent_reported_its_generation() -> None:
    assert reinit_progress({}, 1) is None  # no agent: nothing to wait for
    pending = reinit_progress(AGENTS, 1)
    assert pending is not None
    condition = reinit_condition(pending, 1)
    assert (condition.status, condition.reason) == ("Unknown", reasons.REASON_REINIT_PENDING)
    assert (
        condition.message == "waiting for 2 of 2 agent(s) to re-initialise for generation 1: a, b"
    )
    one = {**AGENTS, "prewarm.dev/reinit-done.a": "1"}
    half = _cond(one, 1)
    assert half.status == "Unknown"
    assert half.message.endswith(": b")
    both = {**one, "prewarm.dev/reinit-done.b": "2"}
    done = _cond(both, 1)
    assert (done.status, done.reason) == ("True", reasons.REASON_REINIT_SUCCEEDED)
    assert done.final
    assert not done.failed
    assert _cond(both, 2).status == "Unknown"
    garbage = {**AGENTS, "prewarm.dev/reinit-done.a": "x", "prewarm.dev/reinit-done.b": "3"}
    assert _cond(garbage, 1).status == "Unknown"


def test_a_failed_run_that_will_be_retried_is_false_not_final_with_its_output() -> None:
    annotations = {**AGENTS, **_failure("a", 1, 1, gave_up=False, output="cloning\nno access")}
    condition = _cond(annotations, 1)
    assert (condition.status, condition.reason) == ("False", reasons.REASON_REINIT_RETRYING)
    assert condition.failed
    assert not condition.final
    assert "agent a: exit status 3 (attempt 1 of 3); it will try again" in condition.message
    assert condition.message.endswith("cloning\nno access")
    assert condition.event == condition.message


def test_an_agent_that_gave_up_fails_the_condition_and_says_what_happens_next() -> None:
    annotations = {
        **AGENTS,
        **_failure("a", 2, 2, gave_up=False),
        **_failure("b", 2, 3, gave_up=True, output="x" * 900 + "the end"),
    }
    condition = _cond(annotations, 2)
    # The agent that gave up is shown first: it is what the user must act on.
    assert (condition.status, condition.reason) == ("False", reasons.REASON_REINIT_FAILED)
    assert condition.final
    assert "agent b: exit status 3 (attempt 3 of 3); gave up" in condition.message
    assert AFTER_GIVING_UP in condition.message
    assert condition.message.endswith("the end")
    # The Event carries a shorter tail than the condition.
    assert condition.event.endswith("x" * (MAX_EVENT_OUTPUT - 7) + "the end")
    assert len(condition.event) < len(condition.message)


def test_a_timeout_that_gave_up_is_reinit_timed_out() -> None:
    annotations = {**AGENTS, **_failure("a", 1, 3, gave_up=True, timed_out=True)}
    condition = _cond(annotations, 1)
    assert condition.reason == reasons.REASON_REINIT_TIMED_OUT
    # Without the details (an agent restarted after giving up), the short reason still says it.
    short = {
        **AGENTS,
        "prewarm.dev/reinit-failed.a": "1: timed out after 5s (gave up after 3 attempts)",
    }
    condition = _cond(short, 1)
    assert condition.reason == reasons.REASON_REINIT_TIMED_OUT
    assert "Output" not in condition.message


def test_failures_of_another_generation_say_nothing_about_this_claim() -> None:
    annotations = {**AGENTS, **_failure("a", 1, 3, gave_up=True)}
    condition = _cond(annotations, 2)
    assert condition.reason == reasons.REASON_REINIT_PENDING
    # Details of an older run beside a newer short reason are not mixed in.
    mixed = {**annotations, "prewarm.dev/reinit-failed.a": "2: exit status 1"}
    condition = _cond(mixed, 2)
    assert condition.reason == reasons.REASON_REINIT_RETRYING
    assert "attempt" not in condition.message
    assert "boom" not in condition.message
    # Done wins over a stale failure of the same agent.
    done = {**annotations, "prewarm.dev/reinit-done.a": "1", "prewarm.dev/reinit-done.b": "1"}
    assert _cond(done, 1).status == "True"


def test_the_pending_condition_of_a_fresh_binding() -> None:
    pending = reinit_pending(("workspace", "prewarm-agent"), 4)
    assert (pending.status, pending.reason) == ("Unknown", reasons.REASON_REINIT_PENDING)
    assert pending.message == (
        "waiting for 2 of 2 agent(s) to re-initialise for generation 4: workspace, prewarm-agent"
    )
    assert not pending.final


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3: exit status 1", (3, "exit status 1", False)),
        ("3: exit status 1 (gave up after 3 attempts)", (3, "exit status 1", True)),
        ("x: exit status 1", None),
        ("3 exit status 1", None),
        ("", None),
        (None, None),
    ],
)
def test_the_failed_annotation_round_trips(
    value: str | None, expected: tuple[int, str, bool] | None
) -> None:
    parsed = parse_failed(value)
    assert (parsed and (parsed.generation, parsed.reason, parsed.gave_up)) == expected
    if parsed is not None:
        assert failed_value(*expected[:2], 3 if expected[2] else 0) == value  # type: ignore[index,misc]


def test_the_output_annotation_round_trips_and_is_bounded() -> None:
    failure = HookFailure(2, 1, 3, True, "y" * 5000)
    parsed = HookFailure.parse(failure.to_annotation())
    assert parsed == HookFailure(2, 1, 3, True, "y" * MAX_OUTPUT_TAIL)
    for bad in ("", "5", "[]", '{"generation": 1}', "{", None):
        assert HookFailure.parse(bad) is None
