"""The resync (handlers/registrations.py): every key gets a pass at most a
period after its last one, and a key that just had a pass of its own is not
given another. Simulated on a fake clock, the resync's ticks stepped by hand."""

from __future__ import annotations

import asyncio

from prewarm.handlers import registrations
from prewarm.workqueue import WorkQueue

PERIOD = 30.0
TICK = PERIOD / registrations.RESYNC_TICKS


def test_the_resync_gives_each_key_a_pass_a_period_after_its_last_and_skips_busy_ones() -> None:
    now = [0.0]
    ran: list[tuple[float, str]] = []

    async def scenario() -> None:
        queue: WorkQueue[tuple[str, str]] = WorkQueue(clock=lambda: now[0])

        async def work(key: tuple[str, str]) -> None:
            now[0] += 0.01  # a pass takes a moment: it ends just after its tick
            ran.append((round(now[0]), key[1]))

        task = asyncio.create_task(queue.run_workers(1, work, lambda k, e: None))
        keys = [("ns", "idle"), ("ns", "busy")]
        for tick in range(13):  # three periods
            now[0] = tick * TICK
            if tick:
                registrations._resync_idle(queue, keys, PERIOD - TICK)
            if tick % 2 == 0:
                queue.add(("ns", "busy"))  # its events give it a pass every other tick
            for _ in range(4):
                await asyncio.sleep(0)
        task.cancel()

    asyncio.run(scenario())
    # Never seen before: the first tick gives it a pass; then one per period.
    assert [t for t, key in ran if key == "idle"] == [8, 38, 68]
    # Only its own passes: the resync never added one.
    assert [t for t, key in ran if key == "busy"] == [15 * i for i in range(7)]
