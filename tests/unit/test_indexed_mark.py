"""The picture is complete once kopf's preset index (the first event handler
proves it) and the operator's own claim, workspace and pod listings are; it
says so once, with how much they hold: the line the restart benchmark times
(bench/restart.py)."""

from __future__ import annotations

import logging

import pytest

from prewarm.handlers import registrations
from prewarm.handlers.runtime import Runtime
from prewarm.handlers.watched import ClaimEntry
from prewarm.settings import Settings


@pytest.mark.parametrize(
    "order",
    [
        ("kopf", "claims", "workspaces", "pods"),
        ("pods", "kopf", "workspaces", "claims"),
        ("claims", "workspaces", "pods", "kopf"),
    ],
)
def test_all_four_parts_mark_the_picture_complete_and_log_its_size_once(
    order: tuple[str, str, str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt = Runtime(settings=Settings(), kube=None, ledger=None)  # type: ignore[arg-type]
    rt.presets = {("ns", "p"): ["preset"]}
    rt.workspaces = {("ns", "p"): ["w1", "w2"], ("ns", "q"): ["w3"]}
    rt.pods = {("ns", "w1"): ["pod"], ("ns", "w2"): ["pod"]}
    rt.claims = {}
    with caplog.at_level(logging.INFO, logger="prewarm.operator"):
        registrations._index_complete(rt, order[0])
        registrations._index_complete(rt, order[0])
        registrations._index_complete(rt, order[1])
        registrations._index_complete(rt, order[2])
        assert not rt.indexed.is_set()  # part of a picture plans nothing
        registrations._index_complete(rt, order[3])
        registrations._index_complete(rt, order[0])
    assert rt.indexed.is_set()
    lines = [r.getMessage() for r in caplog.records if "indexes complete" in r.getMessage()]
    assert lines == ["indexes complete: 1 presets, 3 workspaces, 2 pods, 0 claims"]


def test_the_claims_first_listing_wakes_the_claims_whose_users_still_wait() -> None:
    """A fresh operator's own claim watch wakes nobody for its first listing
    (handlers/object_index.py); kopf's had woken every claim. A Pending claim
    must not wait for the resync."""
    rt = Runtime(settings=Settings(), kube=None, ledger=None)  # type: ignore[arg-type]
    phases = {"new": None, "pending": "Pending", "bound": "Bound", "failed": "Failed"}
    rt.claims = {
        ("ns", name): [
            ClaimEntry.from_body(
                {
                    "metadata": {"namespace": "ns", "name": name, "uid": name},
                    "spec": {"presetRef": {"name": "p"}, "owner": "alice"},
                    "status": {"phase": phase} if phase else {},
                }
            )
        ]
        for name, phase in phases.items()
    }
    registrations._claims_listed(rt)
    assert [n for n in phases if rt.claim_queue.waiting(("ns", n))] == ["new", "pending"]
    assert "claims" not in rt.indexes_pending
