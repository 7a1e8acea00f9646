"""A pod's or a workspace's event wakes its claim at once and its preset within
100 ms, once per burst (handlers/registrations._wake_pod, _wake_workspace)."""

from __future__ import annotations

import asyncio

from prewarm.handlers import registrations
from prewarm.handlers.runtime import Runtime
from prewarm.settings import Settings

KEY = ("ns", "p")


def _runtime() -> Runtime:
    return Runtime(settings=Settings(), kube=None, ledger=None)  # type: ignore[arg-type]


def test_a_burst_of_pod_events_makes_one_preset_pass_after_the_delay() -> None:
    rt = _runtime()

    async def scenario() -> tuple[bool, bool, int, bool]:
        for _ in range(3):  # created, bound, Ready
            registrations._wake_pod(rt, "ns", "p", "c")
        claim_at_once = rt.claim_queue.waiting(("ns", "c"))
        preset_at_once = rt.queue.waiting(KEY)
        await asyncio.sleep(registrations.POD_WAKE_DELAY_S * 2)
        return claim_at_once, preset_at_once, len(rt.queue), rt.queue.waiting(KEY)

    assert asyncio.run(scenario()) == (True, False, 1, True)


def test_no_timer_when_a_pass_of_the_preset_is_already_due() -> None:
    """Else the timer would add a second pass right after the one already due."""
    rt = _runtime()

    async def scenario() -> int:
        rt.queue.add(KEY)
        registrations._wake_pod(rt, "ns", "p", "")
        return rt.memory_sizes()["timers"]

    assert asyncio.run(scenario()) == 0


def test_a_workspace_burst_wakes_its_claim_and_the_warm_waiters_at_once_its_preset_once() -> None:
    """A workspace's events (created, status written, taken) come in bursts as a
    pod's do; kopf's per-object path used to merge them."""
    rt = _runtime()
    rt.memory.wait_for_warm(("ns", "waiting"), KEY)

    async def scenario() -> tuple[bool, bool, bool, int]:
        for _ in range(3):
            registrations._wake_workspace(rt, "ns", "p", "c")
        at_once = (rt.claim_queue.waiting(("ns", "c")), rt.claim_queue.waiting(("ns", "waiting")))
        preset_at_once = rt.queue.waiting(KEY)
        await asyncio.sleep(registrations.POD_WAKE_DELAY_S * 2)
        return *at_once, preset_at_once, len(rt.queue)

    assert asyncio.run(scenario()) == (True, True, False, 1)
