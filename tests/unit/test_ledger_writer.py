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
