"""metav1.Condition and pure helpers to read and update condition lists.

Helpers return new lists and never mutate their input, so planning code can
compute the desired status and compare it with the current one to decide
whether a status patch is needed at all (zero writes in steady state).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Final

from pydantic import Field

from prewarm.api.base import ApiModel, Timestamp

CONDITION_TYPE_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """One aspect of an object's state, in the metav1.Condition shape."""

    type: str = Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)
    status: ConditionStatus
    reason: str = Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)
    message: str = Field(default="", max_length=32768)
    last_transition_time: Timestamp
    observed_generation: int | None = Field(default=None, ge=0)


def get_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of that type, or None."""
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    """True only if the condition exists and its status is True (absent counts as not true)."""
    condition = get_condition(conditions, type_)
    return condition is not None and condition.status is ConditionStatus.TRUE


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus | str,
    reason: str,
    message: str,
    observed_generation: int | None,
    now: Timestamp,
) -> list[Condition]:
    """A new list with the condition of `type_` set; other conditions keep their order.

    lastTransitionTime moves to `now` only when the status changes (or the
    condition is new): a changed reason or message is not a transition, and
    rewriting the time on every loop would make each resync a status write.
    """
    new_status = ConditionStatus(status)
    previous = get_condition(conditions, type_)
    transition_time = (
        previous.last_transition_time
        if previous is not None and previous.status is new_status
        else now
    )
    updated = Condition(
        type=type_,
        status=new_status,
        reason=reason,
        message=message,
        last_transition_time=transition_time,
        observed_generation=observed_generation,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c.type == type_ else c for c in conditions]


def remove_condition(conditions: Sequence[Condition], type_: str) -> list[Condition]:
    """A new list without the condition of `type_`."""
    return [c for c in conditions if c.type != type_]
