"""Ledger writes that must not sit on a hot path: claims are answered first and
recorded right after, in order, retried until PostgreSQL takes them.

Every ledger write is an idempotent upsert keyed by Kubernetes UIDs, so a
retry after an outage (or a replay after a restart) is safe.

Only a transient failure is retried: PostgreSQL unreachable, a lost
connection, a timeout, a serialisation failure. A write PostgreSQL answered
with a verdict (a constraint it violates, data it refuses, a statement that
is wrong) fails the same way on every retry, so it is logged with its name,
handed to `on_dropped` (the operator counts it in
`prewarm_ledger_writes_dropped_total`) and dropped: one bad write must not
hold back every write after it, nor keep /readyz at 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import psycopg
from psycopg_pool import PoolTimeout

from prewarm.ledger.repository import LedgerUnavailable

log = logging.getLogger("prewarm.ledger")

Write = Callable[[], Awaitable[object]]
OnDropped = Callable[[str, BaseException], None]
# Ledger.batch: a context in which the writes share one connection and pipeline.
Batching = Callable[[], AbstractAsyncContextManager[None]]

# Writes that queued up while one was written go out together, up to this many:
# one connection and one round trip instead of one each (docs/decisions.md,
# "Ledger writes go out in batches").
BATCH_MAX = 64

# Failures a retry can cure. psycopg's OperationalError covers a lost
# connection, an administrator's shutdown, a cancelled statement (timeout),
# too many connections and serialisation failures or deadlocks.
_TRANSIENT: tuple[type[BaseException], ...] = (
    LedgerUnavailable,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
    TimeoutError,
    OSError,
)


def is_transient(error: BaseException) -> bool:
    """Whether retrying the write can succeed. Anything else (IntegrityError,
    DataError, ProgrammingError, a TypeError in the write itself) is permanent."""
    return isinstance(error, _TRANSIENT)


def _ignore(what: str, error: BaseException) -> None:
    del what, error


class BackgroundWrites:
    def __init__(
        self,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        on_dropped: OnDropped = _ignore,
        batching: Batching | None = None,
    ) -> None:
        self._queue: asyncio.Queue[tuple[str, Write]] = asyncio.Queue()
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self.healthy = True  # False while writes keep failing (PostgreSQL down)
        self._submitted = 0
        self._written = 0
        self._progress = asyncio.Condition()
        self._writing_since: float | None = None  # time.monotonic() of the write in hand
        self._on_dropped = on_dropped
        self.dropped = 0  # writes given up because they can never succeed
        self._batching = batching

    def batch_with(self, batching: Batching) -> None:
        """Write what queued up together, inside `batching` (Ledger.batch)."""
        self._batching = batching

    def submit(self, what: str, write: Write) -> None:
        self._submitted += 1
        self._queue.put_nowait((what, write))

    @property
    def backlog(self) -> int:
        """Writes submitted and not yet written: queued, or in the batch in hand."""
        return self._submitted - self._written

    async def drain(self) -> None:
        """Wait until everything submitted so far is written.

        Only so far: writes submitted while we wait are not waited for, or a
        busy operator (a pool filling) would wait for a queue that never empties.
        """
        target = self._submitted
        async with self._progress:
            await self._progress.wait_for(lambda: self._written >= target)

    def stalled(self, after_s: float) -> bool:
        """Whether writes are failing, or one has hung for `after_s` or more
        (PostgreSQL down, or stopped without closing its connections)."""
        since = self._writing_since
        return not self.healthy or (since is not None and time.monotonic() - since >= after_s)

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH_MAX and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._writing_since = time.monotonic()
            if len(batch) == 1 or not await self._write_batch(batch):
                for what, write in batch:
                    await self._write(what, write)
            for _ in batch:
                self._queue.task_done()
            self._writing_since = None
            async with self._progress:
                self._written += len(batch)
                self._progress.notify_all()

    async def _write_batch(self, batch: list[tuple[str, Write]]) -> bool:
        """The writes in one batch (Ledger.batch: one connection, one pipeline);
        False if any failed, and then none is written: the caller writes them
        one at a time, each retried or dropped on its own (they are idempotent,
        so one written twice is no harm)."""
        if self._batching is None:
            return False
        try:
            async with self._batching():
                for _, write in batch:
                    await write()
        except asyncio.CancelledError:
            raise
        except Exception:
            return False
        self.healthy = True
        return True

    async def _write(self, what: str, write: Write) -> None:
        """Until it is written (retrying transient failures) or dropped (a permanent one)."""
        delay = self._retry_base_s
        while True:
            try:
                await write()
                self.healthy = True
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if not is_transient(error):
                    self._drop(what, error)
                    return
                self.healthy = False
                log.warning("ledger write %s failed, retrying in %.1fs: %s", what, delay, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)

    def _drop(self, what: str, error: Exception) -> None:
        # It would fail the same way forever. If PostgreSQL gave the verdict,
        # PostgreSQL is up; a write wrong in itself says nothing about it.
        if isinstance(error, psycopg.Error):
            self.healthy = True
        self.dropped += 1
        log.error(
            "ledger write %s dropped: %s cannot succeed on a retry: %s",
            what,
            type(error).__name__,
            error,
        )
        self._on_dropped(what, error)
