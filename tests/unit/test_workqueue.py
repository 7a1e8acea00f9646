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


class _Recorder:
    def __init__(self) -> None:
        self.depths: list[int] = []
        self.waits: list[float] = []
        self.retries = 0

    def depth(self, keys: int) -> None:
        self.depths.append(keys)

    def waited(self, seconds: float) -> None:
        self.waits.append(seconds)

    def retried(self) -> None:
        self.retries += 1


def test_issue18_queue_reports_depth_wait_and_retries() -> None:
    now = [100.0]
    recorder = _Recorder()

    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue(recorder, clock=lambda: now[0])
        queue.add("a")
        queue.add("a")  # collapses: no second depth report
        queue.add("b")
        now[0] = 102.5  # both waited 2.5 s (a fake clock: no timing here)

        async def work(key: str) -> None:
            if key == "b":
                raise RuntimeError("fails")

        task = asyncio.create_task(queue.run_workers(1, work, lambda k, e: None))
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(scenario())
    assert recorder.depths == [1, 2, 1, 0]
    assert recorder.waits == [2.5, 2.5]
    assert recorder.retries == 1


def test_waiting_is_queued_or_marked_to_run_again_not_running() -> None:
    async def scenario() -> list[bool]:
        queue: WorkQueue[str] = WorkQueue()
        seen = [queue.waiting("a")]
        queue.add("a")
        seen.append(queue.waiting("a"))
        started, release = asyncio.Event(), asyncio.Event()

        async def work(key: str) -> None:
            started.set()
            await release.wait()

        task = asyncio.create_task(queue.run_workers(1, work, lambda k, e: None))
        await started.wait()
        seen.append(queue.waiting("a"))  # running: another add would be needed
        queue.add("a")
        seen.append(queue.waiting("a"))  # marked to run again after this run
        task.cancel()
        return seen

    assert asyncio.run(scenario()) == [False, True, False, True]


def test_recent_is_queued_running_or_ended_within_the_window_and_forgets_the_rest() -> None:
    now = [0.0]

    async def scenario() -> list[set[str]]:
        queue: WorkQueue[str] = WorkQueue(clock=lambda: now[0])
        seen = [queue.recent(10)]
        started, release = asyncio.Event(), asyncio.Event()

        async def work(key: str) -> None:
            if key == "slow":
                started.set()
                await release.wait()

        task = asyncio.create_task(queue.run_workers(2, work, lambda k, e: None))
        queue.add("done")
        queue.add("slow")
        await started.wait()
        queue.add("queued")  # the one free worker takes it at the next turn
        seen.append(queue.recent(10))  # all three: running, queued, ended at 0
        await asyncio.sleep(0.01)
        now[0] = 9.9
        seen.append(queue.recent(10))
        now[0] = 10.0
        seen.append(queue.recent(10))  # ended 10 s ago: no longer recent
        release.set()
        await asyncio.sleep(0.01)  # "slow" ends at 10
        now[0] = 25.0
        seen.append(queue.recent(20))  # the window does not bring back what was forgotten
        task.cancel()
        return seen

    assert asyncio.run(scenario()) == [
        set(),
        {"done", "slow", "queued"},
        {"done", "slow", "queued"},
        {"slow"},
        {"slow"},
    ]
