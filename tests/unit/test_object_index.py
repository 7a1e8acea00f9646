"""The workspace pods, PrebuiltWorkspaces and WorkspaceClaims in memory
(handlers/object_index.py): what a watch's events and listings leave there,
whom they wake, and which objects they report gone."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from prewarm.api.constants import LABEL_CLAIM, LABEL_PRESET, LABEL_WORKSPACE
from prewarm.handlers.object_index import ObjectIndex, read_claim, read_pod, read_workspace
from prewarm.handlers.watched import ClaimEntry, WorkspaceEntry


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
        self.index = ObjectIndex(read_pod, self.wake, scopes, self.on_listed)

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


def _workspace(
    name: str, preset: str = "p", claim: str = "", phase: str = "Building"
) -> dict[str, Any]:
    spec: dict[str, Any] = {"presetRef": {"name": preset}, "templateHash": "a" * 16}
    if claim:
        spec["claimRef"] = {"name": claim, "uid": f"uid-{claim}"}
    return {
        "metadata": {"namespace": "a", "name": name, "uid": f"uid-{name}", "resourceVersion": "1"},
        "spec": spec,
        "status": {"phase": phase},
    }


class Workspaces:
    def __init__(self) -> None:
        self.woken: list[tuple[str, str, str]] = []
        self.gone: list[str] = []
        self.index = ObjectIndex(
            read_workspace, lambda *who: self.woken.append(who), [None], lambda: None, self.forget
        )
        self.sink = self.index.scope(None)

    def forget(self, entry: WorkspaceEntry) -> None:
        self.gone.append(entry.uid)

    def held(self) -> dict[tuple[str, str], list[tuple[str, str]]]:
        return {k: [(e.name, e.phase.value) for e in self.index.get(k)] for k in self.index}


def test_workspaces_kept_by_preset_wake_preset_and_claim_and_are_forgotten_when_deleted() -> None:
    ws = Workspaces()
    ws.sink.changed("ADDED", _workspace("w1"))
    ws.sink.changed("MODIFIED", _workspace("w1", claim="c1", phase="Claimed"))
    assert ws.held() == {("a", "p"): [("w1", "Claimed")]}
    assert ws.gone == []
    ws.sink.changed("DELETED", _workspace("w1", claim="c1", phase="Claimed"))
    assert ws.held() == {}
    assert ws.gone == ["uid-w1"]  # its memory goes with it, as kopf's DELETED did
    assert ws.woken == [("a", "p", ""), ("a", "p", "c1"), ("a", "p", "c1")]


def test_a_listing_again_forgets_the_workspaces_it_no_longer_holds_and_only_those() -> None:
    ws = Workspaces()
    ws.sink.listing_started()
    for name in ("stays", "goes"):
        ws.sink.listed(_workspace(name))
    ws.sink.listed(_workspace("moves", preset="p"))
    ws.sink.listing_done()
    ws.sink.listing_started()
    ws.sink.listed(_workspace("stays"))
    ws.sink.listed(_workspace("moves", preset="q"))
    ws.sink.listing_done()
    assert ws.gone == ["uid-goes"]  # a workspace under another key is not gone
    assert sorted(ws.held()) == [("a", "p"), ("a", "q")]


def _version(body: dict[str, Any], version: str) -> dict[str, Any]:
    body["metadata"]["resourceVersion"] = version
    return body


def test_a_write_of_its_own_is_held_at_once_unless_the_watch_brought_a_later_one() -> None:
    """A take's answer goes into the index before its watch event (no wake:
    the event wakes as usual), so a claim deciding in between does not see the
    workspace free; but never over what the watch brought since the read."""
    ws = Workspaces()
    ws.sink.changed("ADDED", _workspace("w1"))
    ws.woken.clear()

    def still(version: str) -> Any:
        return lambda held: held.resource_version == version

    ws.index.wrote(_version(_workspace("w1", claim="c1", phase="Ready"), "2"), still("1"))
    assert ws.held() == {("a", "p"): [("w1", "Ready")]}
    assert [e.claim for e in ws.index.get(("a", "p"))] == ["c1"]
    assert ws.woken == []
    # The watch already holds version 3: an answer based on version 2 is older.
    ws.sink.changed("MODIFIED", _version(_workspace("w1", claim="c1", phase="Claimed"), "3"))
    ws.index.wrote(_version(_workspace("w1", phase="Ready"), "4"), still("2"))
    assert ws.held() == {("a", "p"): [("w1", "Claimed")]}
    # Gone from the index meanwhile: the answer does not bring it back.
    ws.sink.changed("DELETED", _workspace("w1"))
    ws.index.wrote(_version(_workspace("w1", claim="c1"), "5"), still("3"))
    assert ws.held() == {}


def test_a_workspace_the_model_refuses_is_left_out_with_a_warning_and_the_rest_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The watch must go on: a ValueError out of the sink would make the watch
    list again and again, and the picture would never be complete."""
    ws = Workspaces()
    bad = _workspace("bad")
    bad["status"]["phase"] = "NotAPhase"
    with caplog.at_level(logging.WARNING, logger="prewarm.watch"):
        ws.sink.listing_started()
        ws.sink.listed(bad)
        ws.sink.listed(_workspace("good"))
        ws.sink.listing_done()
        ws.sink.changed("MODIFIED", bad)
    assert ws.held() == {("a", "p"): [("good", "Building")]}
    assert [r.getMessage()[:30] for r in caplog.records] == ["ignoring PrebuiltWorkspace a/b"] * 2


def _claim(name: str, preset: str = "p", lifetime: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"presetRef": {"name": preset}, "owner": "alice"}
    if lifetime:
        spec["lifetime"] = lifetime
    meta = {"namespace": "a", "name": name, "uid": f"uid-{name}"}
    return {"metadata": {**meta, "creationTimestamp": "2026-11-30T12:00:00Z"}, "spec": spec}


class Claims:
    def __init__(self) -> None:
        self.woken: list[tuple[str, str, str]] = []
        self.gone: list[str] = []
        self.listed = 0
        self.index = ObjectIndex(
            read_claim, lambda *who: self.woken.append(who), [None], self.on_listed, self.forget
        )
        self.sink = self.index.scope(None)

    def on_listed(self) -> None:
        self.listed += 1

    def forget(self, entry: ClaimEntry) -> None:
        self.gone.append(entry.name)

    def held(self) -> dict[tuple[str, str], list[str]]:
        return {k: [e.preset for e in self.index.get(k)] for k in self.index}


def test_claims_kept_by_name_wake_themselves_and_are_forgotten_when_deleted() -> None:
    claims = Claims()
    claims.sink.listing_started()
    claims.sink.listed(_claim("c1"))
    claims.sink.listing_done()
    assert (claims.listed, claims.woken) == (1, [])  # the first listing wakes nobody
    claims.sink.changed("ADDED", _claim("c2", preset="q"))
    claims.sink.changed("MODIFIED", _claim("c1"))
    assert claims.held() == {("a", "c1"): ["p"], ("a", "c2"): ["q"]}
    claims.sink.changed("DELETED", _claim("c1"))
    assert claims.held() == {("a", "c2"): ["q"]}
    assert claims.gone == ["c1"]  # its memory goes with it, as kopf's DELETED did
    assert claims.woken == [("a", "q", "c2"), ("a", "p", "c1"), ("a", "p", "c1")]


def test_a_claim_its_entry_refuses_is_left_out_with_a_warning_and_the_rest_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    claims = Claims()
    bad = _claim("bad")
    bad["metadata"]["creationTimestamp"] = "not a time"
    with caplog.at_level(logging.WARNING, logger="prewarm.watch"):
        claims.sink.changed("ADDED", bad)
        claims.sink.changed("ADDED", _claim("good"))
    assert claims.held() == {("a", "good"): ["p"]}
    assert [r.getMessage()[:29] for r in caplog.records] == ["ignoring WorkspaceClaim a/bad"]
