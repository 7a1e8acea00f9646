"""The operator's own watch of workspace pods: a paged list, then a watch from
its resourceVersion, again and again.

kopf keeps the CRDs (design.md); pods went to this loop because kopf's
per-event path was the operator's largest cost (docs/decisions.md, "Workspace
pods are watched outside kopf"). A pod is handed over as soon as it is read,
so a fresh start over 10,000 pods never holds the whole listing at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import aiohttp

from prewarm.k8s.core import ApiError, JsonObject, Rest, collection_path

log = logging.getLogger("prewarm.pods")

# Pods per list page: bounds what one response holds in memory at start.
PAGE_SIZE = 500
# As kopf's watches (handlers/registrations.py): the server ends each watch
# after this, and the next one resumes from the last resourceVersion.
WATCH_TIMEOUT_S = 45
# Longest pause between two attempts after an error.
RETRY_MAX_S = 10.0


class PodSink(Protocol):
    """Where the pods go: a listing replaces what the sink held of its scope."""

    def listing_started(self) -> None: ...

    def listed(self, pod: JsonObject) -> None: ...

    def listing_done(self) -> None: ...

    def changed(self, event_type: str, pod: JsonObject) -> None: ...


class PodWatch:
    """Pods with `selector` in one namespace (None: the whole cluster)."""

    def __init__(self, rest: Rest, namespace: str | None, selector: str, sink: PodSink) -> None:
        self._rest = rest
        self._namespace = namespace
        self._selector = selector
        self._sink = sink
        self._version = ""  # where the next watch resumes; "" lists first
        self._path = collection_path("", "v1", namespace, "pods") if namespace else "/api/v1/pods"

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
                    log.info("pod watch %s: history expired, listing again", self._scope)
                    self._version = ""
                    continue
                await self._pause(delay, error)
                delay = min(delay * 2, RETRY_MAX_S)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
                await self._pause(delay, error)
                delay = min(delay * 2, RETRY_MAX_S)

    @property
    def _scope(self) -> str:
        return f"in {self._namespace}" if self._namespace else "of the cluster"

    async def _pause(self, delay: float, error: BaseException) -> None:
        log.warning("pod watch %s: %s; again in %.0fs", self._scope, error or repr(error), delay)
        await asyncio.sleep(delay)

    async def _list(self) -> str:
        """Every pod, page by page, into the sink; the listing's resourceVersion."""
        self._sink.listing_started()
        query: list[tuple[str, str]] = [
            ("labelSelector", self._selector),
            ("limit", str(PAGE_SIZE)),
        ]
        token = ""
        while True:
            page = await self._rest.request(
                "GET", self._path, query=[*query, ("continue", token)] if token else query
            )
            for pod in page.get("items") or ():
                self._sink.listed(pod)
            meta: dict[str, Any] = page.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                self._sink.listing_done()
                return str(meta.get("resourceVersion", ""))

    async def _watch(self) -> None:
        """One watch from the last resourceVersion seen, which each event (a
        bookmark too) moves on: a watch cut short resumes after its last event."""
        query = [
            ("labelSelector", self._selector),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", self._version),
        ]
        events = self._rest.watch(self._path, query, WATCH_TIMEOUT_S)
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for event_type, pod in events:
                version = (pod.get("metadata") or {}).get("resourceVersion")
                self._version = str(version or self._version)
                if event_type != "BOOKMARK":
                    self._sink.changed(event_type, pod)
