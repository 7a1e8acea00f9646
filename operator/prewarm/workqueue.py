"""A de-duplicating, level-triggered work queue (the controller-runtime pattern).

Any number of events for one key collapse into one pending run; a key is never
processed by two workers at once; a key enqueued while it is being processed
runs once more afterwards. So a burst of child events costs one reconcile, and
a reconcile always sees a state at least as new as the event that woke it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)


class QueueObserver(Protocol):
    """What a queue reports (metrics.QueueMetrics): depth, wait, retries."""

    def depth(self, keys: int) -> None: ...

    def waited(self, seconds: float) -> None: ...

    def retried(self) -> None: ...


class _Unobserved:
    def depth(self, keys: int) -> None:
        pass

    def waited(self, seconds: float) -> None:
        pass

    def retried(self) -> None:
        pass


class WorkQueue(Generic[K]):
    def __init__(
        self,
        observer: QueueObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._pending: dict[K, float] = {}  # in the queue, not yet taken: since when
        self._active: set[K] = set()  # taken by a worker right now
        self._dirty: set[K] = set()  # enqueued while active: run again after
        self._ended: dict[K, float] = {}  # when each key's last run ended (see `recent`)
        self._observer: QueueObserver = observer or _Unobserved()
        self._clock = clock

    def add(self, key: K) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._pending:
            self._pending[key] = self._clock()
            self._queue.put_nowait(key)
            self._observer.depth(len(self._pending))

    def waiting(self, key: K) -> bool:
        """Whether `key` will run without another add: queued, or marked to run again."""
        return key in self._pending or key in self._dirty

    def __len__(self) -> int:
        return len(self._pending) + len(self._dirty)

    @property
    def busy(self) -> bool:
        """Anything waiting or being worked on."""
        return bool(self._pending or self._active or self._dirty)

    async def _take(self) -> K:
        key = await self._queue.get()
        self._observer.waited(self._clock() - self._pending.pop(key))
        self._observer.depth(len(self._pending))
        self._active.add(key)
        return key

    def recent(self, seconds: float) -> set[K]:
        """The keys queued, running, or whose last run ended less than `seconds`
        ago; what ended longer ago is forgotten (so deleted keys do not pile up)."""
        now = self._clock()
        self._ended = {k: t for k, t in self._ended.items() if now - t < seconds}
        return {*self._ended, *self._pending, *self._active, *self._dirty}

    def _done(self, key: K) -> None:
        self._active.discard(key)
        self._ended[key] = self._clock()
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    async def run_workers(
        self,
        count: int,
        work: Callable[[K], Awaitable[None]],
        on_error: Callable[[K, BaseException], None],
    ) -> None:
        """Run `count` workers until cancelled. An error in one key never stops the
        others; `on_error` schedules its retry (counted as one)."""

        async def worker() -> None:
            while True:
                key = await self._take()
                try:
                    await work(key)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    self._observer.retried()
                    on_error(key, error)
                finally:
                    self._done(key)

        async with asyncio.TaskGroup() as group:
            for _ in range(count):
                group.create_task(worker())
