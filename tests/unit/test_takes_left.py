"""A claim binds first and takes right after. The workspaces Bound claims name
whose takes an operator stopped before are kept for them when a fresh operator's
picture is complete, and those claims get their passes first."""

from __future__ import annotations

from typing import Any

from prewarm.handlers.runtime import Runtime
from prewarm.handlers.watched import ClaimEntry, PresetEntry, WorkspaceEntry
from prewarm.settings import Settings


def _claim(name: str, phase: str, workspace: str = "") -> ClaimEntry:
    status = {"phase": phase, "workspaceName": workspace} if phase else {}
    return ClaimEntry.from_body(
        {
            "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}"},
            "spec": {"presetRef": {"name": "p"}, "owner": name},
            "status": status,
        }
    )


def _workspace(
    name: str, claim: str = "", phase: str = "Ready", controller: str = "puid"
) -> WorkspaceEntry:
    """A pool member (controlled by the preset), or with `claim` the claim's."""
    kind, uid = ("WorkspaceClaim", f"uid-{claim}") if claim else ("Preset", controller)
    spec: dict[str, Any] = {"presetRef": {"name": "p"}, "templateHash": "a" * 16}
    if claim:
        spec.update(owner=claim, claimRef={"name": claim, "uid": f"uid-{claim}"})
    return WorkspaceEntry.from_body(
        {
            "metadata": {
                "namespace": "ns", "name": name, "uid": f"wuid-{name}", "resourceVersion": "1",
                "labels": {"prewarm.dev/preset": "p"},
                "ownerReferences": [{"apiVersion": "prewarm.dev/v1alpha1", "kind": kind,
                                     "name": claim or "p", "uid": uid, "controller": True}],
            },
            "spec": spec,
            "status": {"phase": phase},
        }
    )  # fmt: skip


def _runtime(claims: list[ClaimEntry], workspaces: list[WorkspaceEntry]) -> Runtime:
    rt = Runtime(settings=Settings(), kube=None, ledger=None)  # type: ignore[arg-type]
    preset = PresetEntry.from_body({"metadata": {"namespace": "ns", "name": "p", "uid": "puid"}})
    rt.presets, rt.pods = {("ns", "p"): [preset]}, {}
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
            _claim("planted", "Bound", "w-foreign"),  # not the preset's: never trusted
            _claim("waiting", "Pending"),
        ],
        [
            _workspace("w-free"),
            _workspace("w-done", claim="done"),
            _workspace("w-other", claim="winner"),
            _workspace("w-building", phase="Building"),
            _workspace("w-foreign", controller="someone-else"),
            _workspace("w-spare"),
        ],
    )
    rt.promise_takes_left()
    assert rt.promised == {"w-free": ("ns", "halfway")}
    assert len(rt.claim_queue) == 1
    assert rt.claim_queue.waiting(("ns", "halfway"))
    # Every claim, and the pool, keep off it.
    assert "w-free" in rt.kept_off()
    assert rt.is_kept_off("w-free")
    # A claim that goes takes its promise with it.
    rt.forget_claim(("ns", "halfway"))
    assert rt.promised == {}
