from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prewarm.api.workspace import WorkspacePhase
from prewarm.planning.pool import Blocker, FailureView, Instance, PoolInput, plan_pool
from prewarm.planning.quota import quota_message, refused

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
API = (
    'pods "pool-abc" is forbidden: exceeded quota: two-pods, requested: pods=1, '
    "used: pods=2, limited: pods=2"
)


def test_full_quota_message_names_the_quota() -> None:
    assert quota_message(API) == (
        "exceeded quota: two-pods, requested: pods=1, used: pods=2, limited: pods=2"
    )


def test_full_quota_retry_doubles_up_to_a_minute() -> None:
    hold = refused(None, API, NOW)
    waits = [hold.retry_at - NOW]
    for _ in range(6):
        hold = refused(hold, API, NOW)
        waits.append(hold.retry_at - NOW)
    assert [w.total_seconds() for w in waits] == [5, 10, 20, 40, 60, 60, 60]
    assert hold.active(NOW)
    assert not hold.active(NOW + timedelta(seconds=60))


def test_full_quota_holds_creates_but_is_no_failure() -> None:
    ready = Instance("r1", "h", WorkspacePhase.READY, NOW, ready_at=NOW)
    plan = plan_pool(
        PoolInput(
            desired=4,
            template_hash="h",
            instances=[ready],
            now=NOW,
            failure=FailureView(quota_exceeded=True),
        )
    )
    assert plan.create == 0
    assert plan.blocked_by is Blocker.QUOTA_EXCEEDED
