from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prewarm.api import reasons
from prewarm.api.conditions import (
    Condition,
    ConditionStatus,
    get_condition,
    is_true,
    remove_condition,
    set_condition,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def _ready(status: ConditionStatus) -> list[Condition]:
    return set_condition([], reasons.READY, status, reasons.REASON_POOL_READY, "3/3", 1, T0)


def test_new_condition_gets_now() -> None:
    [condition] = _ready(ConditionStatus.TRUE)
    assert condition.type == "Ready"
    assert condition.status is ConditionStatus.TRUE
    assert condition.last_transition_time == T0
    assert condition.observed_generation == 1


def test_same_status_keeps_transition_time_but_updates_the_rest() -> None:
    before = _ready(ConditionStatus.FALSE)
    after = set_condition(
        before, reasons.READY, "False", reasons.REASON_SCALING_UP, "1/3 ready", 2, T1
    )
    [condition] = after
    assert condition.last_transition_time == T0
    assert condition.reason == reasons.REASON_SCALING_UP
    assert condition.message == "1/3 ready"
    assert condition.observed_generation == 2


def test_status_change_moves_transition_time() -> None:
    after = set_condition(
        _ready(ConditionStatus.FALSE), reasons.READY, ConditionStatus.TRUE, "PoolReady", "", 1, T1
    )
    assert after[0].last_transition_time == T1


def test_identical_update_is_equal_so_no_status_write_is_needed() -> None:
    before = _ready(ConditionStatus.TRUE)
    after = set_condition(before, reasons.READY, "True", reasons.REASON_POOL_READY, "3/3", 1, T1)
    assert after == before


def test_input_is_not_mutated_and_order_is_kept() -> None:
    conditions = set_condition([], reasons.READY, "False", "ScalingUp", "", 1, T0)
    conditions = set_condition(conditions, reasons.PROGRESSING, "True", "ScalingUp", "", 1, T0)
    snapshot = [c.model_copy() for c in conditions]
    updated = set_condition(conditions, reasons.READY, "True", "PoolReady", "", 1, T1)
    assert conditions == snapshot
    assert [c.type for c in updated] == ["Ready", "Progressing"]


def test_get_and_is_true() -> None:
    conditions = set_condition(
        [], reasons.HARD_LIMITED, "True", "PrebuildFailureLimitReached", "", 1, T0
    )
    assert get_condition(conditions, reasons.HARD_LIMITED) is conditions[0]
    assert get_condition(conditions, reasons.READY) is None
    assert is_true(conditions, reasons.HARD_LIMITED)
    assert not is_true(conditions, reasons.READY)
    unknown = set_condition(conditions, reasons.READY, "Unknown", "Starting", "", 1, T0)
    assert not is_true(unknown, reasons.READY)


def test_remove_condition() -> None:
    conditions = set_condition([], reasons.PAUSED, "True", "PausedByAnnotation", "", 1, T0)
    assert remove_condition(conditions, reasons.PAUSED) == []
    assert len(conditions) == 1


def test_serialises_in_metav1_shape() -> None:
    [condition] = _ready(ConditionStatus.TRUE)
    assert condition.model_dump(mode="json", by_alias=True) == {
        "type": "Ready",
        "status": "True",
        "reason": "PoolReady",
        "message": "3/3",
        "lastTransitionTime": "2026-01-01T12:00:00Z",
        "observedGeneration": 1,
    }


def test_condition_types_match_the_design() -> None:
    assert {
        "Ready",
        "Progressing",
        "HardLimited",
        "ValidationFailed",
        "Paused",
        "Bound",
        "Reinitialized",
        "Degraded",
        "QuotaExceeded",
        "ScheduleInvalid",
        "CreateRefused",
        "WorkspaceLost",
    } == reasons.CONDITION_TYPES
