"""The workspace pods in memory (handlers/pod_index.py): what a watch's
events and listings leave there, and whom they wake."""

from __future__ import annotations

from typing import Any

from prewarm.api.constants import LABEL_CLAIM, LABEL_PRESET, LABEL_WORKSPACE
from prewarm.handlers.pod_index import PodIndex


def _pod(namespace: str, name: str, phase: str = "Pending", claim: str = "") -> dict[str, Any]:
    labels = {LABEL_WORKSPACE: name, LABEL_PRESET: "p"}
    if claim:
        labels[LABEL_CLAIM] = claim
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "labels": labels,
            "creationTimestamp": "2026-11-30T12:00:00Z",
        },
        "status": {"phase": phase},
    }


class Recorder:
    def __init__(self, scopes: list[str | None]) -> None:
        self.woken: list[tuple[str, str, str]] = []
        self.listed = 0
        self.index = PodIndex(self.wake, scopes, self.on_listed)

    def wake(self, namespace: str, preset: str, claim: str) -> None:
        self.woken.append((namespace, preset, claim))

    def on_listed(self) -> None:
        self.listed += 1

    def names(self, namespace: str, workspace: str) -> list[tuple[str, str]]:
        return [(e.name, e.view.phase) for e in self.index.get((namespace, workspace))]


def _list(rec: Recorder, scope: str | None, pods: list[dict[str, Any]]) -> None:
    sink = rec.index.scope(scope)
    sink.listing_started()
    for pod in pods:
        sink.listed(pod)
    sink.listing_done()


def test_events_keep_the_pods_and_wake_their_preset_and_claim() -> None:
    rec = Recorder([None])
    sink = rec.index.scope(None)
    sink.changed("ADDED", _pod("a", "w1"))
    sink.changed("MODIFIED", _pod("a", "w1", "Running", claim="c1"))
    assert rec.names("a", "w1") == [("w1", "Running")]
    sink.changed("DELETED", _pod("a", "w1", "Running", claim="c1"))
    assert rec.names("a", "w1") == []
    assert list(rec.index) == []  # no empty keys left behind
    assert rec.woken == [("a", "p", ""), ("a", "p", "c1"), ("a", "p", "c1")]


def test_a_pod_without_the_workspace_label_is_not_kept() -> None:
    rec = Recorder([None])
    pod = _pod("a", "w1")
    del pod["metadata"]["labels"][LABEL_WORKSPACE]
    rec.index.scope(None).changed("ADDED", pod)
    _list(rec, None, [pod])
    assert list(rec.index) == []
    assert rec.woken == []


def test_the_picture_is_listed_once_every_scope_listed_and_the_first_listing_wakes_nobody() -> None:
    rec = Recorder(["a", "b"])
    _list(rec, "a", [_pod("a", "w1"), _pod("a", "w2")])
    assert rec.listed == 0
    _list(rec, "b", [_pod("b", "w3")])
    _list(rec, "b", [_pod("b", "w3")])
    assert rec.listed == 1
    assert sorted(rec.index) == [("a", "w1"), ("a", "w2"), ("b", "w3")]
    assert rec.woken == []


def test_a_listing_again_replaces_its_scope_and_wakes_what_it_changed() -> None:
    """After 410 Gone: the watch missed events, so what the new listing differs
    in (a pod gone, a pod changed, a pod new) wakes its preset and claim."""
    rec = Recorder(["a", "b"])
    _list(rec, "a", [_pod("a", "same"), _pod("a", "gone", claim="c1"), _pod("a", "moved")])
    _list(rec, "b", [_pod("b", "other")])
    _list(rec, "a", [_pod("a", "same"), _pod("a", "moved", "Running"), _pod("a", "new")])
    assert sorted(rec.index) == [("a", "moved"), ("a", "new"), ("a", "same"), ("b", "other")]
    assert rec.names("a", "moved") == [("moved", "Running")]
    # Once each: preset p (for gone, moved and new) and claim c1 (gone's).
    assert rec.woken == [("a", "p", ""), ("a", "p", "c1")]


def test_a_listing_cut_short_and_started_again_leaves_no_partial_pods() -> None:
    rec = Recorder([None])
    sink = rec.index.scope(None)
    sink.listing_started()
    sink.listed(_pod("a", "half"))
    # The connection broke: the watch lists again from the start.
    _list(rec, None, [_pod("a", "whole")])
    assert list(rec.index) == [("a", "whole")]


def test_a_pod_whose_workspace_label_changes_moves_and_one_that_loses_it_goes() -> None:
    """kopf's index moved an object when its key changed; so must ours. With a
    label selector the API server reports a pod that lost the label as DELETED,
    with the label gone from the object it sends."""
    rec = Recorder([None])
    sink = rec.index.scope(None)
    sink.changed("ADDED", _pod("a", "w1"))
    moved = _pod("a", "w1")
    moved["metadata"]["labels"][LABEL_WORKSPACE] = "w2"
    sink.changed("MODIFIED", moved)
    assert list(rec.index) == [("a", "w2")]
    left = _pod("a", "w1", claim="c1")
    del left["metadata"]["labels"][LABEL_WORKSPACE]
    sink.changed("DELETED", left)
    assert list(rec.index) == []
    # Added, moved (its preset once: the same before and after), then gone.
    assert rec.woken == [("a", "p", ""), ("a", "p", ""), ("a", "p", "")]


def test_a_pod_listed_then_deleted_without_its_label_goes() -> None:
    rec = Recorder([None])
    _list(rec, None, [_pod("a", "w1")])
    left = _pod("a", "w1")
    del left["metadata"]["labels"][LABEL_WORKSPACE]
    rec.index.scope(None).changed("DELETED", left)
    assert list(rec.index) == []
