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
        self._wake = wake
        self._unlisted = set(scopes)
        self._on_listed = on_listed

    def get(self, key: PodKey, default: Any = None) -> ValuesView[PodEntry]:
        del default  # no pods is an empty collection, as kopf's index answers
        return self._pods.get(key, _NONE).values()

    def __iter__(self) -> Iterator[PodKey]:
        return iter(self._pods)

    def __len__(self) -> int:
        return len(self._pods)

    def scope(self, namespace: str | None) -> ScopeSink:
        """What one watch (one namespace, or None: the cluster) feeds."""
        return ScopeSink(self, namespace)

    def changed(self, event_type: str, pod: JsonObject) -> None:
        key = _key(pod)
        if key is None:
            return
        entry = PodEntry.from_body(pod)
        pods = self._pods.setdefault(key, {})
        if event_type == "DELETED":
            pods.pop(entry.name, None)
            if not pods:
                del self._pods[key]
        else:
            pods[entry.name] = entry
        self._wake(entry.namespace, entry.preset, entry.claim)

    def replace(self, namespace: str | None, listed: dict[PodKey, dict[str, PodEntry]]) -> None:
        """A listing of one scope replaces what was held of it. After the first
        listing the pods it changed wake their preset and claim: they are what a
        watch that lost its history (410 Gone) did not see."""
        first = namespace in self._unlisted
        old = {k: v for k, v in self._pods.items() if namespace is None or k[0] == namespace}
        for key in old:
            del self._pods[key]
        self._pods.update(listed)
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
