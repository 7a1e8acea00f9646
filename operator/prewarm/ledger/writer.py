"""Ledger writes that must not sit on a hot path: claims are answered first and
recorded right after, in order, retried until PostgreSQL takes them.

Every ledger write is an idempotent upsert keyed by Kubernetes UIDs, so a
retry after an outage (or a replay after a restart) is safe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("prewarm.ledger")

Write = Callable[[], Awaitable[object]]


class BackgroundWrites:
    def __init__(self, retry_base_s: float = 0.5, retry_max_s: float = 30.0) -> None:
        self._queue: asyncio.Queue[tuple[str, Write]] = asyncio.Queue()
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self.healthy = True  # False while writes keep failing (PostgreSQL down)
        self._submitted = 0
        self._written = 0
        self._progress = asyncio.Condition()
        self._writing_since: float | None = None  # time.monotonic() of the write in hand

    def submit(self, what: str, write: Write) -> None:
        self._submitted += 1
        self._queue.put_nowait((what, write))

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

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
            what, write = await self._queue.get()
            self._writing_since = time.monotonic()
            delay = self._retry_base_s
            while True:
                try:
                    await write()
                    self.healthy = True
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    self.healthy = False
                    log.warning("ledger write %s failed, retrying in %.1fs: %s", what, delay, error)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._retry_max_s)
            self._queue.task_done()
            self._writing_since = None
            async with self._progress:
                self._written += 1
                self._progress.notify_all()
