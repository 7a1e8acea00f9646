from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from prewarm.handlers.failure_memo import FailureMemo
from prewarm.ledger.models import FailureState

KEY = ("team", "python")
QUESTION = ("uid-1", "hash-a", 3)
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
CLEAN = FailureState.clean("uid-1", "hash-a", 3)
FAILING = replace(CLEAN, consecutive_failures=1, recent_failures=1)


def _remembered(state: FailureState, memo: FailureMemo | None = None) -> FailureMemo:
    memo = memo or FailureMemo()
    memo.put(KEY, memo.ticket(KEY), QUESTION, state, NOW)
    return memo


def test_an_answer_is_served_for_the_same_question_only() -> None:
    memo = _remembered(CLEAN)
    assert memo.get(KEY, QUESTION) == CLEAN
    assert memo.get(KEY, ("uid-1", "hash-b", 3)) is None  # the template changed
    assert memo.get(KEY, ("uid-2", "hash-a", 3)) is None  # a new preset of that name
    assert memo.get(("team", "other"), QUESTION) is None


def test_a_failed_build_always_drops_the_answer() -> None:
    memo = _remembered(CLEAN)
    memo.build_event(KEY, failed=True)
    assert memo.get(KEY, QUESTION) is None


def test_starts_and_successes_keep_a_clean_answer() -> None:
    memo = _remembered(CLEAN)
    memo.build_event(KEY, failed=False)
    assert memo.get(KEY, QUESTION) == CLEAN


@pytest.mark.parametrize(
    "state",
    [
        FAILING,
        replace(CLEAN, validation_failed=True),
        replace(CLEAN, consecutive_failures=3, recent_failures=3, hard_limited=True),
    ],
)
def test_any_build_event_drops_an_answer_with_failures_in_it(state: FailureState) -> None:
    memo = _remembered(state)
    memo.build_event(KEY, failed=False)  # a success ends the streak
    assert memo.get(KEY, QUESTION) is None


def test_an_answer_read_while_a_build_event_arrived_is_not_kept() -> None:
    memo = FailureMemo()
    ticket = memo.ticket(KEY)  # the pass starts reading the ledger...
    memo.build_event(KEY, failed=True)  # ...a failure is queued meanwhile
    memo.put(KEY, ticket, QUESTION, CLEAN, NOW)
    assert memo.get(KEY, QUESTION) is None


def test_an_answer_expires_at_its_backoff_deadline_and_after_max_age() -> None:
    in_backoff = replace(FAILING, backoff_until=NOW - timedelta(seconds=1))
    assert _remembered(in_backoff).get(KEY, QUESTION) is None  # deadline already passed
    waiting = replace(FAILING, backoff_until=NOW + timedelta(hours=1))
    assert _remembered(waiting).get(KEY, QUESTION) == waiting
    assert _remembered(CLEAN, FailureMemo(max_age_s=0)).get(KEY, QUESTION) is None


def test_forget_and_clear_drop_answers() -> None:
    memo = _remembered(CLEAN)
    memo.forget(KEY)
    assert memo.get(KEY, QUESTION) is None
    memo = _remembered(CLEAN)
    memo.clear()
    assert memo.get(KEY, QUESTION) is None
