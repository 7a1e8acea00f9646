"""The operator's own watches of workspace pods, PrebuiltWorkspaces and
WorkspaceClaims: a paged list, then a watch from its resourceVersion, again
and again.

kopf keeps the Presets. The pods left it because kopf's per-event path was
the operator's largest cost, the workspaces because kopf holds every listed
object until all its indexes are complete, and a fresh start over 10,000
workspaces kept that peak's heap for good, the claims because kopf's
per-event path was the largest cost of a claim burst (docs/decisions.md,
"Workspace pods are watched outside kopf", "PrebuiltWorkspaces are watched
outside kopf" and "WorkspaceClaims are watched outside kopf"). An object is
handed over as soon as it is read, so a fresh start never holds the whole
listing at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import aiohttp

from prewarm.k8s.core import ApiError, JsonObject, Rest, collection_path

log = logging.getLogger("prewarm.watch")

# Objects per list page: bounds what one response holds in memory at start.
PAGE_SIZE = 500
# As kopf's watches (handlers/registrations.py): the server ends each watch
# after this, and the next one resumes from the last resourceVersion.
WATCH_TIMEOUT_S = 45
# Longest pause between two attempts after an error.
RETRY_MAX_S = 10.0


class ListSink(Protocol):
    """Where the objects go: a listing replaces what the sink held of its scope."""

    def listing_started(self) -> None: ...

    def listed(self, obj: JsonObject) -> None: ...

    def listing_done(self) -> None: ...

    def changed(self, event_type: str, obj: JsonObject) -> None: ...


def scope_path(group: str, version: str, plural: str, namespace: str | None) -> str:
    """The collection in one namespace, or (None) of the whole cluster."""
    if namespace:
        return collection_path(group, version, namespace, plural)
    return f"/apis/{group}/{version}/{plural}" if group else f"/api/{version}/{plural}"


async def holds_any(rest: Rest, path: str) -> bool:
    """Whether the collection (`scope_path`) holds at least one object: a list of one."""
    page = await rest.request("GET", path, query=[("limit", "1")])
    return bool(page.get("items"))


class ListWatch:
    """The objects of one collection (`scope_path`), those with `selector` when
    one is given; `what` names them in the log."""

    def __init__(
        self, rest: Rest, path: str, sink: ListSink, *, what: str, selector: str = ""
    ) -> None:
        self._rest = rest
        self._path = path
        self._sink = sink
        self._what = what
        self._selector = [("labelSelector", selector)] if selector else []
        self._version = ""  # where the next watch resumes; "" lists first

    async def run(self) -> None:
        """List, watch until the history is gone (410), list again; errors of
        the connection wait and resume where they were. Runs until cancelled."""
        delay = 1.0
        while True:
            try:
                if not self._version:
                    self._version = await self._list()
                await self._watch()
                delay = 1.0
            except ApiError as error:
                if error.status == 410:
                    log.info("%s watch %s: history expired, listing again", self._what, self._path)
                    self._version = ""
                    continue
                await self._pause(delay, error)
                delay = min(delay * 2, RETRY_MAX_S)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
                await self._pause(delay, error)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _pause(self, delay: float, error: BaseException) -> None:
        log.warning(
            "%s watch %s: %s; again in %.0fs", self._what, self._path, error or repr(error), delay
        )
        await asyncio.sleep(delay)

    async def _list(self) -> str:
        """Every object, page by page, into the sink; the listing's resourceVersion."""
        self._sink.listing_started()
        query = [*self._selector, ("limit", str(PAGE_SIZE))]
        token = ""
        while True:
            page = await self._rest.request(
                "GET", self._path, query=[*query, ("continue", token)] if token else query
            )
            for obj in page.get("items") or ():
                self._sink.listed(obj)
            meta: dict[str, Any] = page.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                self._sink.listing_done()
                return str(meta.get("resourceVersion", ""))

    async def _watch(self) -> None:
        """One watch from the last resourceVersion seen, which each event (a
        bookmark too) moves on: a watch cut short resumes after its last event."""
        query = [
            *self._selector,
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", self._version),
        ]
        events = self._rest.watch(self._path, query, WATCH_TIMEOUT_S)
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for event_type, obj in events:
                version = (obj.get("metadata") or {}).get("resourceVersion")
                self._version = str(version or self._version)
                if event_type != "BOOKMARK":
                    self._sink.changed(event_type, obj)
