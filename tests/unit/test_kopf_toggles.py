"""kopf's toggle sets, with handlers.kopf_toggles installed, wake their waiters
only when the set's state changes: a fresh start over many objects (each a
toggle made, then dropped) no longer wakes every waiter for every object."""

from __future__ import annotations

import asyncio

from kopf._cogs.aiokits import aiotoggles

from prewarm.handlers import kopf_toggles

WAITERS = 200


async def _index_like_kopf(toggles: aiotoggles.ToggleSet, n: int) -> int:
    """What kopf does at start: a blocker while it spawns; per object a toggle
    made, then dropped once indexed, then a wait for the whole set. Returns how
    many times the waiters re-checked the set."""
    checks = 0
    real_is_on = toggles.is_on

    def counting_is_on() -> bool:
        nonlocal checks
        checks += 1
        return real_is_on()

    toggles.is_on = counting_is_on  # type: ignore[method-assign]
    blocker = await toggles.make_toggle(name="blocker")
    done: list[int] = []

    async def worker(i: int, toggle: aiotoggles.Toggle) -> None:
        await toggles.drop_toggle(toggle)
        await toggles.wait_for(True)
        done.append(i)

    tasks = []
    for i in range(n):
        toggle = await toggles.make_toggle(name=str(i))
        tasks.append(asyncio.create_task(worker(i, toggle)))
        await asyncio.sleep(0)  # the worker runs, drops its toggle and waits
    assert not done  # the blocker holds every one back
    await toggles.drop_toggle(blocker)
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert sorted(done) == list(range(n))
    return checks


def test_waiters_are_woken_when_the_set_turns_on_not_for_every_toggle() -> None:
    kopf_toggles.install()
    checks = asyncio.run(_index_like_kopf(aiotoggles.ToggleSet(all), WAITERS))
    # Without the fix: every make and drop woke every waiter (about WAITERS**2
    # re-checks, 40,000 here); with it, a few per waiter.
    assert checks < 10 * WAITERS


def test_a_set_still_wakes_its_waiters_when_it_turns_off_and_on() -> None:
    kopf_toggles.install()

    async def scenario() -> None:
        paused = aiotoggles.ToggleSet(any)
        off = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0)
        toggle = await paused.make_toggle(True, name="paused")  # turns the set on
        await asyncio.wait_for(off, 1)
        on = asyncio.create_task(paused.wait_for(False))
        await asyncio.sleep(0)
        await paused.drop_toggle(toggle)  # and off again
        await asyncio.wait_for(on, 1)
        toggle = await paused.make_toggle(False, name="later")
        back = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0)
        await toggle.turn_to(True)  # a toggle's own change still wakes them
        await asyncio.wait_for(back, 1)

    asyncio.run(scenario())
