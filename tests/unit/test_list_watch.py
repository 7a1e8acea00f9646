"""The operator's watch loop (k8s/list_watch.py) over a scripted API: which
requests it sends after a page, a watch's end, 410 Gone and a broken connection.
The real API server's side is tests/e2e/test_list_watch_api.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from prewarm.k8s import list_watch
from prewarm.k8s.core import ApiError
from prewarm.k8s.list_watch import ListWatch, scope_path


class Done(Exception):
    """The script ran out: ends the loop under test."""


class ScriptedRest:
    """Answers lists from `pages` and watches from `watches`, in order, and
    records each request's (kind, query) as sent."""

    def __init__(self, pages: list[Any], watches: list[Any]) -> None:
        self.pages, self.watches = pages, watches
        self.sent: list[tuple[str, dict[str, str]]] = []
        self.paths: set[str] = set()

    async def request(self, method: str, path: str, query: list[tuple[str, str]]) -> Any:
        self.sent.append(("list", dict(query)))
        self.paths.add(path)
        if not self.pages:
            raise Done
        page = self.pages.pop(0)
        if isinstance(page, BaseException):
            raise page
        return page

    async def watch(
        self, path: str, query: list[tuple[str, str]], timeout_s: int
    ) -> AsyncIterator[tuple[str, Any]]:
        self.sent.append(("watch", dict(query)))
        self.paths.add(path)
        if not self.watches:
            raise Done
        for event in self.watches.pop(0):
            if isinstance(event, BaseException):
                raise event
            yield event


class Sink:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def listing_started(self) -> None:
        self.seen.append("start")

    def listed(self, pod: Any) -> None:
        self.seen.append(f"listed {pod['metadata']['name']}")

    def listing_done(self) -> None:
        self.seen.append("done")

    def changed(self, event_type: str, pod: Any) -> None:
        self.seen.append(f"{event_type} {pod['metadata']['name']}")


def _page(names: list[str], rv: str, token: str = "") -> dict[str, Any]:
    return {
        "metadata": {"resourceVersion": rv, "continue": token},
        "items": [{"metadata": {"name": n}} for n in names],
    }


def _event(kind: str, name: str, rv: str) -> tuple[str, Any]:
    return kind, {"metadata": {"name": name, "resourceVersion": rv}}


def _run(
    rest: ScriptedRest, sink: Sink, monkeypatch: pytest.MonkeyPatch, selector: str = "s"
) -> list[float]:
    pauses: list[float] = []

    async def no_sleep(delay: float) -> None:
        pauses.append(delay)

    monkeypatch.setattr(list_watch.asyncio, "sleep", no_sleep)
    watch = ListWatch(rest, "/path", sink, what="pod", selector=selector)  # type: ignore[arg-type]
    with pytest.raises(Done):
        asyncio.run(watch.run())
    return pauses


def test_pages_then_a_watch_from_the_listing_and_the_next_from_its_last_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rest = ScriptedRest(
        [_page(["a", "b"], "10", token="t1"), _page(["c"], "11")],
        [[_event("ADDED", "d", "12"), _event("BOOKMARK", "", "15")], []],
    )
    sink = Sink()
    assert _run(rest, sink, monkeypatch) == []
    assert sink.seen == ["start", "listed a", "listed b", "listed c", "done", "ADDED d"]
    lists = [q for kind, q in rest.sent if kind == "list"]
    assert lists[0]["labelSelector"] == "s"
    assert rest.paths == {"/path"}
    assert "continue" not in lists[0]
    assert lists[1]["continue"] == "t1"
    watches = [q["resourceVersion"] for kind, q in rest.sent if kind == "watch"]
    # From the listing's version, then from the bookmark's: never a list again.
    assert watches == ["11", "15", "15"]
    assert len(lists) == 2


def test_410_gone_lists_again_and_a_broken_connection_resumes_where_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gone = ApiError(410, "Expired", "too old resource version")
    rest = ScriptedRest(
        [_page(["a"], "10"), _page(["a", "b"], "20")],
        [
            [_event("MODIFIED", "a", "12"), aiohttp.ClientPayloadError("cut")],
            [gone],
            [_event("DELETED", "a", "21")],
        ],
    )
    sink = Sink()
    pauses = _run(rest, sink, monkeypatch)
    assert sink.seen == [
        *("start", "listed a", "done", "MODIFIED a"),
        *("start", "listed a", "listed b", "done", "DELETED a"),
    ]
    versions = [(kind, q.get("resourceVersion", "")) for kind, q in rest.sent]
    assert versions == [
        ("list", ""),
        ("watch", "10"),
        ("watch", "12"),  # the cut: resumed from the last event, after a pause
        ("list", ""),  # 410: the history is gone, list again, with no pause
        ("watch", "20"),
        ("watch", "21"),
    ]
    assert pauses == [1.0]


def test_errors_back_off_up_to_the_limit_and_a_listing_cut_short_starts_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = ApiError(503, "ServiceUnavailable", "")
    rest = ScriptedRest(
        [_page(["a"], "10", token="t"), refused, *([OSError("down")] * 5), _page(["b"], "30")],
        [],
    )
    sink = Sink()
    pauses = _run(rest, sink, monkeypatch)
    assert pauses == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    # Each attempt lists from the start; only the whole listing is done.
    assert sink.seen[-3:] == ["start", "listed b", "done"]
    assert sink.seen.count("done") == 1


def test_without_a_selector_every_object_of_the_collection_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The workspaces' watch: no labelSelector, neither on the list nor the watch."""
    rest = ScriptedRest([_page(["a"], "10")], [[]])
    _run(rest, Sink(), monkeypatch, selector="")
    assert [sorted(q) for _, q in rest.sent] == [
        ["limit"],
        ["allowWatchBookmarks", "resourceVersion"],
        ["allowWatchBookmarks", "resourceVersion"],
    ]


def test_scope_paths_of_one_namespace_and_of_the_cluster() -> None:
    assert scope_path("", "v1", "pods", "ns") == "/api/v1/namespaces/ns/pods"
    assert scope_path("", "v1", "pods", None) == "/api/v1/pods"
    assert scope_path("prewarm.dev", "v1alpha1", "prebuiltworkspaces", None) == (
        "/apis/prewarm.dev/v1alpha1/prebuiltworkspaces"
    )
    assert scope_path("prewarm.dev", "v1alpha1", "prebuiltworkspaces", "ns") == (
        "/apis/prewarm.dev/v1alpha1/namespaces/ns/prebuiltworkspaces"
    )
