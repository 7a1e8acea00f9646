"""A full ResourceQuota: when to try a refused pod again. Pure.

A quota refusal (403 "exceeded quota") is no verdict on the template: the pod
is admitted once something else in the namespace goes away. So it is neither
a build failure nor a validation failure; the preset holds its creates and
tries again after a backoff that doubles up to a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

QUOTA_RETRY_FIRST = timedelta(seconds=5)
QUOTA_RETRY_MAX = timedelta(seconds=60)


@dataclass(frozen=True)
class QuotaHold:
    message: str  # the API server's words: which quota, requested, used, limited
    refusals: int  # in a row
    retry_at: datetime

    def active(self, now: datetime) -> bool:
        return now < self.retry_at


def quota_message(api_message: str) -> str:
    """`pods "x" is forbidden: exceeded quota: q, requested: ...` -> from `exceeded quota` on."""
    start = api_message.find("exceeded quota")
    return api_message[start:] if start >= 0 else api_message


def refused(previous: QuotaHold | None, api_message: str, now: datetime) -> QuotaHold:
    """The hold after another refusal: the wait doubles from 5 s up to 60 s."""
    refusals = (previous.refusals if previous else 0) + 1
    wait = min(QUOTA_RETRY_FIRST * 2 ** min(refusals - 1, 10), QUOTA_RETRY_MAX)
    return QuotaHold(quota_message(api_message), refusals, now + wait)
