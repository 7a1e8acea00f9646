"""A claim binds first and takes right after. The workspaces Bound claims name
whose takes an operator stopped before are kept for them when a fresh operator's
picture is complete, and those claims get their passes first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prewarm.api.workspace import WorkspacePhase
from prewarm.handlers.runtime import Runtime
from prewarm.handlers.watched import ClaimEntry, WorkspaceEntry
from prewarm.settings import Settings

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _claim(name: str, phase: str, workspace: str = "") -> ClaimEntry:
    status = {"phase": phase, "workspaceName": workspace} if phase else {}
    return ClaimEntry.from_body(
        {
            "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}"},
            "spec": {"presetRef": {"name": "p"}, "owner": name},
            "status": status,
        }
    )


def _workspace(name: str, claim: str = "", phase: WorkspacePhase = WorkspacePhase.READY) -> Any:
    holder = f"uid-{claim}" if claim else ""
    return WorkspaceEntry("ns", name, f"wuid-{name}", "1", "p", "h", claim, phase, NOW, NOW, None,
                          None, False, claim=claim, claim_uid=holder)  # fmt: skip


def _runtime(claims: list[ClaimEntry], workspaces: list[WorkspaceEntry]) -> Runtime:
    rt = Runtime(settings=Settings(), kube=None, ledger=None)  # type: ignore[arg-type]
    rt.claims = {("ns", c.name): [c] for c in claims}
    rt.workspaces = {("ns", "p"): workspaces}
    return rt


def test_only_bound_claims_whose_workspace_is_still_the_pools_are_promised_it() -> None:
    rt = _runtime(
        [
            _claim("halfway", "Bound", "w-free"),  # its take did not land
            _claim("done", "Bound", "w-done"),  # its take landed
            _claim("late", "Bound", "w-other"),  # another claim took it meanwhile
            _claim("stale", "Bound", "w-building"),  # no longer Ready: lost, not promised
            _claim("gone", "Bound", "w-gone"),  # not there: lost on its pass
            _claim("waiting", "Pending"),
        ],
        [
            _workspace("w-free"),
            _workspace("w-done", claim="done"),
            _workspace("w-other", claim="winner"),
            _workspace("w-building", phase=WorkspacePhase.BUILDING),
            _workspace("w-spare"),
        ],
    )
    rt.promise_takes_left()
    assert rt.promised == {"w-free": ("ns", "halfway")}
    assert len(rt.claim_queue) == 1
    assert rt.claim_queue.waiting(("ns", "halfway"))
    # Every other claim keeps off it; the one it is promised to does not.
    assert "w-free" in rt.kept_off(("ns", "waiting"))
    assert "w-free" not in rt.kept_off(("ns", "halfway"))
    # A claim that goes takes its promise with it.
    rt.forget_claim(("ns", "halfway"))
    assert rt.promised == {}
