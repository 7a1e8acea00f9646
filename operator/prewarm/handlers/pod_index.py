"""The workspace pods in memory, kept by the operator's own pod watch (k8s/pod_watch).

Keyed as kopf's indexes are (namespace, workspace label) -> pods, so the rest
of the operator reads it as it read kopf's pod index (Runtime.pod).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, ValuesView
from typing import Any

from prewarm.api.constants import LABEL_WORKSPACE
from prewarm.handlers.watched import PodEntry
from prewarm.k8s.core import JsonObject

PodKey = tuple[str, str]  # (namespace, workspace label)
# Called with a pod's (namespace, preset label, claim label) when it changed.
Wake = Callable[[str, str, str], None]

_NONE: Mapping[str, PodEntry] = {}


def _key(pod: Mapping[str, Any]) -> PodKey | None:
    meta = pod.get("metadata") or {}
    workspace = (meta.get("labels") or {}).get(LABEL_WORKSPACE)
    return (str(meta.get("namespace", "")), str(workspace)) if workspace else None


class PodIndex:
    """Pods by (namespace, workspace label), then by name."""

    def __init__(self, wake: Wake, scopes: list[str | None], on_listed: Callable[[], None]) -> None:
        self._pods: dict[PodKey, dict[str, PodEntry]] = {}
        self._where: dict[tuple[str, str], PodKey] = {}  # (namespace, pod name) -> key
        self._wake = wake
        self._unlisted = set(scopes)
        self._on_listed = on_listed

    def get(self, key: PodKey, default: Any = None) -> ValuesView[PodEntry]:
        del default  # no pods is an empty collection, as kopf's index answers
        return self._pods.get(key, _NONE).values()

    def __iter__(self) -> Iterator[PodKey]:
        return iter(self._pods)

    def scope(self, namespace: str | None) -> ScopeSink:
        """What one watch (one namespace, or None: the cluster) feeds."""
        return ScopeSink(self, namespace)

    def changed(self, event_type: str, pod: JsonObject) -> None:
        """One watch event. A pod is found again by its name, not its label: a
        pod whose workspace label changed moves, and one that lost the label
        (the watch says DELETED: it left the selector) goes."""
        meta = pod.get("metadata") or {}
        ident = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        held = self._where.pop(ident, None)
        gone = self._drop(held, ident[1]) if held is not None else None
        key = _key(pod)
        entry = None
        if event_type != "DELETED" and key is not None:
            entry = PodEntry.from_body(pod)
            self._pods.setdefault(key, {})[entry.name] = entry
            self._where[ident] = key
            self._wake(entry.namespace, entry.preset, entry.claim)
        if gone is not None:
            # Whom the pod belonged to before, unless it still does.
            preset = gone.preset if entry is None or gone.preset != entry.preset else ""
            claim = gone.claim if entry is None or gone.claim != entry.claim else ""
            if preset or claim:
                self._wake(gone.namespace, preset, claim)

    def _drop(self, key: PodKey, name: str) -> PodEntry | None:
        pods = self._pods.get(key, {})
        entry = pods.pop(name, None)
        if not pods:
            self._pods.pop(key, None)
        return entry

    def replace(self, namespace: str | None, listed: dict[PodKey, dict[str, PodEntry]]) -> None:
        """A listing of one scope replaces what was held of it. After the first
        listing the pods it changed wake their preset and claim: they are what a
        watch that lost its history (410 Gone) did not see."""
        first = namespace in self._unlisted
        old = {k: v for k, v in self._pods.items() if namespace is None or k[0] == namespace}
        for key in old:
            del self._pods[key]
        self._pods.update(listed)
        for ident in [i for i in self._where if namespace is None or i[0] == namespace]:
            del self._where[ident]
        self._where.update({(k[0], name): k for k, pods in listed.items() for name in pods})
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
        for ns, preset, claim in sorted(woken):
            self._wake(ns, preset, claim)


class ScopeSink:
    """One watch's listing, gathered aside and swapped in when complete (a
    listing cut short by an error leaves the index as it was)."""

    def __init__(self, index: PodIndex, namespace: str | None) -> None:
        self._index = index
        self._namespace = namespace
        self._listing: dict[PodKey, dict[str, PodEntry]] = {}

    def listing_started(self) -> None:
        self._listing = {}

    def listed(self, pod: JsonObject) -> None:
        key = _key(pod)
        if key is not None:
            entry = PodEntry.from_body(pod)
            self._listing.setdefault(key, {})[entry.name] = entry

    def listing_done(self) -> None:
        listing, self._listing = self._listing, {}
        self._index.replace(self._namespace, listing)

    def changed(self, event_type: str, pod: JsonObject) -> None:
        self._index.changed(event_type, pod)
