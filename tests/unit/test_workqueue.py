from __future__ import annotations

import asyncio

from prewarm.workqueue import WorkQueue


def test_burst_of_events_for_one_key_collapses_into_one_run() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        runs: list[str] = []

        async def work(key: str) -> None:
            runs.append(key)

        for _ in range(50):
            queue.add("a")
        queue.add("b")
        task = asyncio.create_task(queue.run_workers(2, work, lambda k, e: None))
        await asyncio.sleep(0.05)
        task.cancel()
        return runs

    assert sorted(asyncio.run(scenario())) == ["a", "b"]


def test_key_added_while_running_runs_again_but_never_concurrently() -> None:
    async def scenario() -> tuple[int, int]:
        queue: WorkQueue[str] = WorkQueue()
        running = 0
        max_running = 0
        runs = 0
        release = asyncio.Event()

        async def work(key: str) -> None:
            nonlocal running, max_running, runs
            running += 1
            max_running = max(max_running, running)
            runs += 1
            if runs == 1:
                await release.wait()
            running -= 1

        queue.add("a")
        task = asyncio.create_task(queue.run_workers(4, work, lambda k, e: None))
        await asyncio.sleep(0.01)
        for _ in range(10):
            queue.add("a")  # arrives while the first run is in progress
        release.set()
        await asyncio.sleep(0.05)
        task.cancel()
        return runs, max_running

    runs, max_running = asyncio.run(scenario())
    assert runs == 2
    assert max_running == 1


def test_an_error_in_one_key_does_not_stop_the_workers() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        queue: WorkQueue[str] = WorkQueue()
        done: list[str] = []
        errors: list[str] = []

        async def work(key: str) -> None:
            if key == "bad":
                raise ValueError("boom")
            done.append(key)

        task = asyncio.create_task(
            queue.run_workers(1, work, lambda k, e: errors.append(f"{k}:{e}"))
        )
        queue.add("bad")
        queue.add("good")
        await asyncio.sleep(0.05)
        task.cancel()
        return done, errors

    done, errors = asyncio.run(scenario())
    assert done == ["good"]
    assert errors == ["bad:boom"]
