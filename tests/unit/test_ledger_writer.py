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


def _failing_once_then(error: BaseException, done: list[str], name: str):  # type: ignore[no-untyped-def]
    calls = {"n": 0}

    async def write() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise error
        done.append(f"{name} retried")

    return write


def _ok(done: list[str], name: str):  # type: ignore[no-untyped-def]
    async def write() -> None:
        done.append(name)

    return write


def _permanent_errors() -> list[BaseException]:
    import psycopg.errors

    return [
        psycopg.errors.UniqueViolation("duplicate key value violates unique constraint"),
        psycopg.errors.ForeignKeyViolation("insert or update on table builds violates fk"),
        psycopg.errors.InvalidDatetimeFormat("invalid input syntax for type timestamp"),
        psycopg.errors.UndefinedColumn("column does not exist"),
        TypeError("record_claim_bound() missing 1 required positional argument"),
    ]


def test_a_write_that_can_never_succeed_is_dropped_counted_and_does_not_block_the_queue() -> None:
    # The old writer retried every failure forever: one constraint violation
    # held back every later write and kept the queue unhealthy (/readyz 503).
    for error in _permanent_errors():

        async def scenario(error: BaseException = error) -> tuple[list[str], list[str], bool]:
            dropped: list[str] = []
            writes = BackgroundWrites(
                retry_base_s=0.001,
                on_dropped=lambda what, e: dropped.append(f"{what}: {type(e).__name__}"),
            )
            done: list[str] = []

            async def poisoned() -> None:
                raise error

            task = asyncio.create_task(writes.run())
            writes.submit("a", _ok(done, "a"))
            writes.submit("claim c bound", poisoned)
            writes.submit("b", _ok(done, "b"))
            await asyncio.wait_for(writes.drain(), 5)
            task.cancel()
            return done, dropped, not writes.stalled(60)

        done, dropped, healthy = asyncio.run(scenario())
        assert done == ["a", "b"], error
        assert dropped == [f"claim c bound: {type(error).__name__}"]
        assert healthy, error


def test_transient_failures_are_retried_not_dropped() -> None:
    import psycopg
    from psycopg_pool import PoolTimeout

    from prewarm.ledger.repository import LedgerUnavailable

    transient: list[BaseException] = [
        LedgerUnavailable("connection refused"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.InterfaceError("the connection is closed"),
        PoolTimeout("couldn't get a connection after 3.00 sec"),
        TimeoutError(),
        ConnectionResetError(),
    ]
    for error in transient:

        async def scenario(error: BaseException = error) -> tuple[list[str], int]:
            dropped: list[str] = []
            writes = BackgroundWrites(
                retry_base_s=0.001, on_dropped=lambda what, e: dropped.append(what)
            )
            done: list[str] = []
            task = asyncio.create_task(writes.run())
            writes.submit("x", _failing_once_then(error, done, "x"))
            await asyncio.wait_for(writes.drain(), 5)
            task.cancel()
            return done, len(dropped)

        assert asyncio.run(scenario()) == (["x retried"], 0), error


def test_the_backlog_counts_the_batch_in_hand_until_it_is_written() -> None:
    """A batch taken from the queue is not written yet: /readyz and
    prewarm_ledger_backlog must still count it."""
    import asyncio

    from prewarm.ledger.writer import BackgroundWrites

    async def scenario() -> list[int]:
        release = asyncio.Event()
        writes = BackgroundWrites()

        async def slow() -> None:
            await release.wait()

        for _ in range(3):
            writes.submit("slow", slow)
        task = asyncio.create_task(writes.run())
        await asyncio.sleep(0.01)  # the writer holds the first write
        seen = [writes.backlog]
        release.set()
        await asyncio.wait_for(writes.drain(), 5)
        seen.append(writes.backlog)
        task.cancel()
        return seen

    assert asyncio.run(scenario()) == [3, 0]
