"""Failure-policy answers remembered per preset, so passes that change nothing skip the ledger.

Every preset pass needs the preset's failure state (consecutive failures, hard
limit, backoff). Reading it from PostgreSQL each time put a wait for the
queued ledger writes and one query on every pass: every resync and every pod
event while a pool fills. The answer can only change when one of the preset's
builds starts or ends, a retry begins, the question changes (template hash,
limits), or time passes (a backoff deadline, failures ageing out of the
lookback window). So a remembered answer is dropped:

- on a failed build, always;
- on any build event if the answer had failures in it (a start or a success
  can end a streak or a validation failure; for a clean answer they cannot);
- at its backoff deadline, and after `max_age_s` in any case;
- on a retry, and whenever this replica is not the one acting (another
  replica may have recorded outcomes meanwhile).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from prewarm.handlers.watched import PresetKey
from prewarm.ledger.models import FailureState

# Failures leave the lookback window (hours) without any event; this bounds how
# late that is noticed.
MAX_AGE_S = 30.0


def _clean(state: FailureState) -> bool:
    return (
        state.consecutive_failures == 0
        and not state.hard_limited
        and not state.validation_failed
        and state.backoff_until is None
    )


@dataclass(frozen=True, slots=True)
class _Memo:
    question: tuple[object, ...]
    state: FailureState
    expires: float  # time.monotonic()


class FailureMemo:
    """Keyed by preset; the question (uid, template hash, limits) must match too."""

    def __init__(self, max_age_s: float = MAX_AGE_S) -> None:
        self._max_age_s = max_age_s
        self._memos: dict[PresetKey, _Memo] = {}
        # Build events per preset, so an answer read while one arrived is not kept.
        self._events: dict[PresetKey, int] = {}

    def get(self, key: PresetKey, question: tuple[object, ...]) -> FailureState | None:
        memo = self._memos.get(key)
        if memo is None or memo.question != question or time.monotonic() >= memo.expires:
            return None
        return memo.state

    def ticket(self, key: PresetKey) -> int:
        """Take before reading the ledger; `put` keeps the answer only if still current."""
        return self._events.get(key, 0)

    def put(
        self,
        key: PresetKey,
        ticket: int,
        question: tuple[object, ...],
        state: FailureState,
        now: datetime,
    ) -> None:
        ttl = self._max_age_s
        if state.backoff_until is not None:
            ttl = min(ttl, (state.backoff_until - now).total_seconds())
        if ttl > 0 and ticket == self.ticket(key):
            self._memos[key] = _Memo(question, state, time.monotonic() + ttl)
        else:
            self._memos.pop(key, None)

    def build_event(self, key: PresetKey, failed: bool) -> None:
        """One of the preset's builds started, succeeded or failed (recorded or queued)."""
        self._events[key] = self._events.get(key, 0) + 1
        memo = self._memos.get(key)
        if memo is not None and (failed or not _clean(memo.state)):
            del self._memos[key]

    def forget(self, key: PresetKey) -> None:
        self._memos.pop(key, None)
        self._events.pop(key, None)

    def clear(self) -> None:
        self._memos.clear()
