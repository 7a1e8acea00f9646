"""Leader election (issue 18): expiry as observed on this replica's own clock,
not by comparing another node's renewTime with it; a leader releases on stop."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from prewarm.api.timestamps import micro_time
from prewarm.k8s.core import ApiError
from prewarm.k8s.lease import LeaderElector

PATH = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/op"


class FakeRest:
    """The Lease endpoint of an API server: GET, POST, conditional PUT."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.rv = 1
        self.lease: dict[str, Any] | None = None
        if spec is not None:
            self.lease = {"metadata": {"name": "op", "resourceVersion": "1"}, "spec": spec}
        self.writes: list[dict[str, Any]] = []

    async def request(self, method: str, path: str, body: Any = None, *_: Any) -> Any:
        if method == "GET":
            if self.lease is None:
                raise ApiError(404, "NotFound", "no lease")
            return copy.deepcopy(self.lease)
        if method == "POST" and self.lease is not None:
            raise ApiError(409, "AlreadyExists", "exists")
        if method == "PUT" and body["metadata"]["resourceVersion"] != str(self.rv):
            raise ApiError(409, "Conflict", "changed")
        self.rv += 1
        self.lease = {"metadata": {"name": "op", "resourceVersion": str(self.rv)}, **body}
        self.lease["metadata"]["resourceVersion"] = str(self.rv)
        self.writes.append(copy.deepcopy(body))
        return self.lease

    def renew(self, holder: str, renew_time: datetime) -> None:
        """Another replica renews (its own clock writes renewTime)."""
        assert self.lease is not None
        self.rv += 1
        self.lease["metadata"]["resourceVersion"] = str(self.rv)
        self.lease["spec"].update(holderIdentity=holder, renewTime=micro_time(renew_time))

    async def watch(self, *_: Any) -> AsyncIterator[tuple[str, Any]]:
        await asyncio.sleep(3600)
        yield "MODIFIED", {}


class FakeKube:
    def __init__(self, rest: FakeRest) -> None:
        self.rest = rest


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _elector(rest: FakeRest, mono: list[float], wall: datetime = NOW) -> LeaderElector:
    return LeaderElector(
        FakeKube(rest),  # type: ignore[arg-type]
        "ns",
        "op",
        "me",
        lease_seconds=15,
        renew_every=3,
        clock=lambda: wall,
        monotonic=lambda: mono[0],
    )


def _other_holds(renew_time: datetime) -> FakeRest:
    return FakeRest(
        {
            "holderIdentity": "other",
            "leaseDurationSeconds": 15,
            "acquireTime": micro_time(renew_time),
            "renewTime": micro_time(renew_time),
            "leaseTransitions": 4,
        }
    )


@pytest.mark.parametrize(
    "skew",
    [timedelta(hours=-3), timedelta(hours=3)],
    ids=["renewTime-far-in-the-past", "renewTime-far-in-the-future"],
)
def test_issue18_a_skewed_renew_time_neither_steals_nor_freezes_leadership(
    skew: timedelta,
) -> None:
    """The other node's clock is 3 h off. Before: a renewTime 3 h in the past was
    "expired" at once (leadership stolen from a live leader); 3 h in the future
    froze it for 3 h after that leader died. Now only what this replica has seen
    counts: a live leader keeps it, a silent one is replaced after 15 s."""
    mono = [1000.0]
    rest = _other_holds(NOW + skew)
    elector = _elector(rest, mono)

    async def rounds() -> list[bool]:
        held = [await elector.try_acquire_or_renew()]
        for _ in range(10):  # the other replica renews every 3 s (on its skewed clock)
            mono[0] += 3
            rest.renew("other", NOW + skew + timedelta(seconds=mono[0] - 1000))
            held.append(await elector.try_acquire_or_renew())
        # Then it dies: no change for 14 s is not enough, 15 s is.
        mono[0] += 14
        held.append(await elector.try_acquire_or_renew())
        mono[0] += 1.5
        held.append(await elector.try_acquire_or_renew())
        return held

    held = asyncio.run(rounds())
    assert held == [False] * 12 + [True]
    assert rest.lease is not None
    assert rest.lease["spec"]["holderIdentity"] == "me"
    assert rest.lease["spec"]["leaseTransitions"] == 5


def test_issue18_a_lease_first_seen_is_waited_out_even_if_its_renew_time_is_old() -> None:
    # client-go's rule: a replica that just started has observed nothing yet.
    mono = [50.0]
    elector = _elector(_other_holds(NOW - timedelta(days=1)), mono)
    assert asyncio.run(elector.try_acquire_or_renew()) is False
    mono[0] += 15.01
    assert asyncio.run(elector.try_acquire_or_renew()) is True


def test_issue18_a_released_lease_is_taken_at_once_and_release_is_conditional() -> None:
    mono = [0.0]
    rest = FakeRest()
    leader = _elector(rest, mono)
    standby = LeaderElector(
        FakeKube(rest),  # type: ignore[arg-type]
        "ns",
        "op",
        "standby",
        lease_seconds=15,
        clock=lambda: NOW,
        monotonic=lambda: mono[0],
    )

    async def scenario() -> tuple[bool, bool, bool, bool]:
        assert await leader.try_acquire_or_renew()
        leader.leading.set()
        blocked = await standby.try_acquire_or_renew()
        released = await leader.release()
        taken = await standby.try_acquire_or_renew()  # same instant: no waiting
        standby.leading.set()
        # A replica that does not lead (any more) never clears another's Lease.
        again = await leader.release()
        return blocked, released, taken, again

    blocked, released, taken, again = asyncio.run(scenario())
    assert (blocked, released, taken, again) == (False, True, True, False)
    released_spec = rest.writes[1]["spec"]
    assert released_spec["holderIdentity"] == ""
    assert released_spec["leaseDurationSeconds"] == 1
    assert rest.lease is not None
    assert rest.lease["spec"]["holderIdentity"] == "standby"
    assert not leader.leading.is_set()


def test_issue18_confidence_uses_the_monotonic_clock() -> None:
    mono = [0.0]
    rest = FakeRest()
    # The wall clock jumps a day ahead: it must not matter.
    elector = _elector(rest, mono, wall=NOW + timedelta(days=1))

    async def scenario() -> None:
        elector_task = asyncio.create_task(elector.run())
        await asyncio.wait_for(elector.leading.wait(), 5)
        elector_task.cancel()

    asyncio.run(scenario())
    assert elector.confident()
    mono[0] += 15
    assert not elector.confident()
