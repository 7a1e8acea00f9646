"""Workspace pods, PrebuiltWorkspaces and WorkspaceClaims in memory, kept by
the operator's own watches (k8s/list_watch.py).

Keyed as kopf's indexes are, (namespace, workspace label) -> pods,
(namespace, preset) -> workspaces and (namespace, name) -> claims, so the rest
of the operator reads them as it read kopf's indexes (Runtime.pod,
Runtime.workspaces_of, Runtime.claim).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, ValuesView
from typing import Any, Generic, Protocol, TypeVar

from pydantic import ValidationError

from prewarm.api.constants import LABEL_WORKSPACE
from prewarm.handlers.watched import ClaimEntry, PodEntry, WorkspaceEntry
from prewarm.k8s.core import JsonObject

log = logging.getLogger("prewarm.watch")

Key = tuple[str, str]  # (namespace, workspace label), (namespace, preset) or (namespace, name)
# Called with an object's (namespace, preset, claim) when it changed.
Wake = Callable[[str, str, str], None]

_NONE: Mapping[str, Any] = {}  # what a key without entries answers, not made anew each read


class Entry(Protocol):
    """What the index needs of an entry: where it lives and whom it concerns."""

    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def preset(self) -> str: ...

    @property
    def claim(self) -> str: ...


E = TypeVar("E", bound=Entry)


class ObjectIndex(Generic[E]):
    """Entries by key, then by name. `read` makes an object's key and entry
    (None: not indexed); `gone` hears of each entry that leaves the index."""

    def __init__(
        self,
        read: Callable[[JsonObject], tuple[Key, E] | None],
        wake: Wake,
        scopes: list[str | None],
        on_listed: Callable[[], None],
        gone: Callable[[E], None] = lambda _: None,
    ) -> None:
        self._entries: dict[Key, dict[str, E]] = {}
        self._where: dict[tuple[str, str], Key] = {}  # (namespace, name) -> key
        self._read = read
        self._wake = wake
        self._gone = gone
        self._unlisted = set(scopes)
        self._on_listed = on_listed

    def get(self, key: Key, default: Any = None) -> ValuesView[E]:
        del default  # none is an empty collection, as kopf's index answers
        return self._entries.get(key, _NONE).values()

    def __iter__(self) -> Iterator[Key]:
        return iter(self._entries)

    def scope(self, namespace: str | None) -> ScopeSink[E]:
        """What one watch (one namespace, or None: the cluster) feeds."""
        return ScopeSink(self, namespace)

    def read(self, obj: JsonObject) -> tuple[Key, E] | None:
        return self._read(obj)

    def changed(self, event_type: str, obj: JsonObject) -> None:
        """One watch event. An object is found again by its name, not its key:
        one whose key changed moves, and one that lost it (a pod that lost its
        label: the watch says DELETED, it left the selector) goes."""
        meta = obj.get("metadata") or {}
        ident = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        held = self._where.pop(ident, None)
        before = self._drop(held, ident[1]) if held is not None else None
        read = self._read(obj) if event_type != "DELETED" else None
        entry = None
        if read is not None:
            key, entry = read
            self._entries.setdefault(key, {})[entry.name] = entry
            self._where[ident] = key
            self._wake(entry.namespace, entry.preset, entry.claim)
        if before is None:
            return
        if entry is None:
            self._gone(before)
        # Whom it belonged to before, unless it still does.
        preset = before.preset if entry is None or before.preset != entry.preset else ""
        claim = before.claim if entry is None or before.claim != entry.claim else ""
        if preset or claim:
            self._wake(before.namespace, preset, claim)

    def wrote(self, obj: JsonObject, based_on: Callable[[E], bool]) -> None:
        """The answer to this process's own write of an object, into the index
        at once, if the entry held is still the one the write was based on
        (`based_on`); otherwise the watch has brought that write or a later one
        already. Nobody is woken: the watch's event of the write does that.
        Without it, a claim deciding between the write and its event saw a
        workspace just taken as free."""
        read = self._read(obj)
        if read is None:
            return
        key, entry = read
        ident = (entry.namespace, entry.name)
        held_key = self._where.get(ident)
        held = self._entries.get(held_key, {}).get(entry.name) if held_key else None
        if held_key is None or held is None or not based_on(held):
            return
        self._drop(held_key, entry.name)
        self._entries.setdefault(key, {})[entry.name] = entry
        self._where[ident] = key

    def _drop(self, key: Key, name: str) -> E | None:
        entries = self._entries.get(key, {})
        entry = entries.pop(name, None)
        if not entries:
            self._entries.pop(key, None)
        return entry

    def replace(self, namespace: str | None, listed: dict[Key, dict[str, E]]) -> None:
        """A listing of one scope replaces what was held of it. After the first
        listing the objects it changed wake their preset and claim: they are what
        a watch that lost its history (410 Gone) did not see."""
        first = namespace in self._unlisted
        old = {k: v for k, v in self._entries.items() if namespace is None or k[0] == namespace}
        for key in old:
            del self._entries[key]
        self._entries.update(listed)
        for ident in [i for i in self._where if namespace is None or i[0] == namespace]:
            del self._where[ident]
        self._where.update({(k[0], name): k for k, entries in listed.items() for name in entries})
        if first:
            self._unlisted.discard(namespace)
            if not self._unlisted:
                self._on_listed()
            return
        woken: set[tuple[str, str, str]] = set()
        for key in old.keys() | listed.keys():
            before, after = old.get(key, _NONE), listed.get(key, _NONE)
            if before != after:
                woken.update(
                    (e.namespace, e.preset, e.claim) for e in (*before.values(), *after.values())
                )
        for entries in old.values():
            for entry in entries.values():
                if (entry.namespace, entry.name) not in self._where:
                    self._gone(entry)
        for ns, preset, claim in sorted(woken):
            self._wake(ns, preset, claim)


class ScopeSink(Generic[E]):
    """One watch's listing, gathered aside and swapped in when complete (a
    listing cut short by an error leaves the index as it was)."""

    def __init__(self, index: ObjectIndex[E], namespace: str | None) -> None:
        self._index = index
        self._namespace = namespace
        self._listing: dict[Key, dict[str, E]] = {}

    def listing_started(self) -> None:
        self._listing = {}

    def listed(self, obj: JsonObject) -> None:
        read = self._index.read(obj)
        if read is not None:
            key, entry = read
            self._listing.setdefault(key, {})[entry.name] = entry

    def listing_done(self) -> None:
        listing, self._listing = self._listing, {}
        self._index.replace(self._namespace, listing)

    def changed(self, event_type: str, obj: JsonObject) -> None:
        self._index.changed(event_type, obj)


def read_pod(pod: Mapping[str, Any]) -> tuple[Key, PodEntry] | None:
    """A pod under (namespace, its workspace label); one without the label is not ours."""
    meta = pod.get("metadata") or {}
    workspace = (meta.get("labels") or {}).get(LABEL_WORKSPACE)
    if not workspace:
        return None
    return (str(meta.get("namespace", "")), str(workspace)), PodEntry.from_body(pod)


def read_workspace(body: Mapping[str, Any]) -> tuple[Key, WorkspaceEntry] | None:
    """A workspace under (namespace, its preset)."""
    entry = _entry_or_warn("PrebuiltWorkspace", WorkspaceEntry.from_body, body)
    return ((entry.namespace, entry.preset), entry) if entry else None


def read_claim(body: Mapping[str, Any]) -> tuple[Key, ClaimEntry] | None:
    """A claim under (namespace, its name)."""
    entry = _entry_or_warn("WorkspaceClaim", ClaimEntry.from_body, body)
    return ((entry.namespace, entry.name), entry) if entry else None


def _entry_or_warn(
    kind: str, from_body: Callable[[Mapping[str, Any]], E], body: Mapping[str, Any]
) -> E | None:
    """The object's entry. One the entry refuses (a pydantic ValidationError is
    a ValueError) is left out with a warning rather than stopping the watch: the
    API server checks the CRD's schema, so only an object written around it
    gets here."""
    try:
        return from_body(body)
    except ValueError as error:
        meta = body.get("metadata") or {}
        why = error.errors(include_url=False)[:1] if isinstance(error, ValidationError) else error
        log.warning("ignoring %s %s/%s: %s", kind, meta.get("namespace"), meta.get("name"), why)
        return None
