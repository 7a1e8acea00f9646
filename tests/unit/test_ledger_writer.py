from __future__ import annotations

import asyncio

from prewarm.ledger.writer import BackgroundWrites


def test_writes_run_in_order_and_failures_are_retried_not_lost() -> None:
    async def scenario() -> tuple[list[str], bool]:
        writes = BackgroundWrites(retry_base_s=0.001)
        done: list[str] = []
        failures = {"b": 3}
        health: list[bool] = []

        def make(name: str):  # type: ignore[no-untyped-def]
            async def write() -> None:
                if failures.get(name, 0) > 0:
                    failures[name] -= 1
                    health.append(writes.healthy)
                    raise ConnectionError("database down")
                done.append(name)

            return write

        task = asyncio.create_task(writes.run())
        for name in "abc":
            writes.submit(name, make(name))
        await asyncio.wait_for(writes.drain(), 5)
        task.cancel()
        return done, writes.healthy

    done, healthy = asyncio.run(scenario())
    assert done == ["a", "b", "c"]
    assert healthy


def test_drain_waits_for_what_was_submitted_before_it_not_after() -> None:
    async def scenario() -> list[str]:
        writes = BackgroundWrites()
        done: list[str] = []
        gates = {"before": asyncio.Event(), "after": asyncio.Event()}

        def make(name: str):  # type: ignore[no-untyped-def]
            async def write() -> None:
                await gates[name].wait()
                done.append(name)

            return write

        task = asyncio.create_task(writes.run())
        writes.submit("before", make("before"))
        drained = asyncio.create_task(writes.drain())
        await asyncio.sleep(0.01)  # drain is waiting for "before"
        writes.submit("after", make("after"))
        gates["before"].set()
        await asyncio.wait_for(drained, 5)  # returns although "after" is still pending
        seen = list(done)
        gates["after"].set()
        await asyncio.wait_for(writes.drain(), 5)
        task.cancel()
        return seen + done

    assert asyncio.run(scenario()) == ["before", "before", "after"]


def test_a_hanging_or_failing_write_makes_the_queue_stalled() -> None:
    async def scenario() -> list[bool]:
        writes = BackgroundWrites(retry_base_s=0.001)
        gate = asyncio.Event()
        seen: list[bool] = [writes.stalled(0.05)]

        async def hangs() -> None:
            await gate.wait()

        task = asyncio.create_task(writes.run())
        writes.submit("hangs", hangs)
        await asyncio.sleep(0.01)
        seen.append(writes.stalled(0.05))  # in hand, not for long yet
        await asyncio.sleep(0.1)
        seen.append(writes.stalled(0.05))  # hanging
        gate.set()
        await asyncio.wait_for(writes.drain(), 5)
        seen.append(writes.stalled(0.05))  # through
        writes.healthy = False
        seen.append(writes.stalled(0.05))  # failing
        task.cancel()
        return seen

    assert asyncio.run(scenario()) == [False, False, True, False, True]
