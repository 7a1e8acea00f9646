"""Which workspaces the operator trusts (planning/membership.py), and that the
runtime hands only those to the pool and to claims."""

from __future__ import annotations

from typing import Any

import pytest

from prewarm.api.preset import PresetSpec
from prewarm.handlers.runtime import Runtime
from prewarm.handlers.watched import PodEntry, PresetEntry, WorkspaceEntry
from prewarm.planning.claims import PresetView, decide_claim
from prewarm.planning.membership import (
    Controller,
    Membership,
    controller_of,
    membership,
)
from prewarm.planning.render import ClaimRef, render_pod, render_workspace
from prewarm.settings import Settings

PRESET = Controller("prewarm.dev", "Preset", "p", "preset-uid")
CLAIM = Controller("prewarm.dev", "WorkspaceClaim", "c", "claim-uid")


def test_a_workspace_the_preset_controls_is_a_pool_member() -> None:
    assert membership("preset-uid", PRESET, "").membership is Membership.POOL


@pytest.mark.parametrize(
    ("controller", "preset_uid", "why"),
    [
        (None, "preset-uid", "no controller ownerReference"),
        # A preset deleted and re-created under the same name: its predecessor's orphans.
        (PRESET, "another-uid", "not the Preset's uid"),
        (PRESET, None, "preset unknown"),
        (Controller("apps", "Preset", "p", "preset-uid"), "preset-uid", "'apps'"),
        (Controller("prewarm.dev", "Something", "p", "preset-uid"), "preset-uid", "Something"),
    ],
)
def test_an_unclaimed_workspace_its_preset_does_not_control_is_foreign(
    controller: Controller | None, preset_uid: str | None, why: str
) -> None:
    verdict = membership(preset_uid, controller, "")
    assert verdict.membership is Membership.FOREIGN
    assert not verdict.trusted
    assert why in verdict.why


def test_a_claimed_workspace_belongs_to_the_claim_that_controls_it() -> None:
    assert membership("preset-uid", CLAIM, "claim-uid").membership is Membership.CLAIMED
    # ... also when its preset is gone: the claim keeps its workspace.
    assert membership(None, CLAIM, "claim-uid").membership is Membership.CLAIMED


@pytest.mark.parametrize(
    "controller",
    [
        PRESET,  # claimRef set on a pool workspace by someone else than a take
        Controller("prewarm.dev", "WorkspaceClaim", "c", "other-claim-uid"),
        None,
    ],
)
def test_a_claimed_workspace_its_claim_does_not_control_is_foreign(
    controller: Controller | None,
) -> None:
    assert membership("preset-uid", controller, "claim-uid").membership is Membership.FOREIGN


def test_a_workspace_whose_pod_someone_else_controls_is_foreign() -> None:
    assert membership("preset-uid", PRESET, "", "ws-uid", "ws-uid").trusted
    assert membership("preset-uid", PRESET, "", "ws-uid", None).trusted  # no pod yet
    planted = membership("preset-uid", PRESET, "", "ws-uid", "")
    assert planted.membership is Membership.FOREIGN
    assert "pod" in planted.why
    assert not membership("x", CLAIM, "claim-uid", "ws-uid", "someone").trusted


def test_what_the_operator_renders_is_trusted_as_what_it_is() -> None:
    """The renderers and the membership rule agree: a pool instance, a cold
    start, and the pod of each."""
    pool = render_workspace("ns", "p", "preset-uid", "h")
    pool_controller = controller_of(pool["metadata"]["ownerReferences"])
    assert membership("preset-uid", pool_controller, "").membership is Membership.POOL
    cold = render_workspace("ns", "p", "preset-uid", "h", claim=ClaimRef("c", "claim-uid", "al"))
    cold_controller = controller_of(cold["metadata"]["ownerReferences"])
    assert membership(
        "preset-uid", cold_controller, cold["spec"]["claimRef"]["uid"]
    ).membership is (Membership.CLAIMED)
    pod = PodEntry.from_body(_pod("ws", "ws-uid"))
    assert pod.controller_uid == "ws-uid"


def test_controller_of_takes_the_controller_reference_only() -> None:
    refs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "1"},
        {"apiVersion": "prewarm.dev/v1alpha1", "kind": "Preset", "name": "p", "uid": "2",
         "controller": True},
    ]  # fmt: skip
    assert controller_of(refs) == Controller("prewarm.dev", "Preset", "p", "2")
    assert controller_of(refs[:1]) is None
    assert controller_of(None) is None


# --- the runtime: what the pool and the claims are given ------------------------------


def _pod(name: str, controller_uid: str | None) -> dict[str, Any]:
    spec = PresetSpec.model_validate(
        {"template": {"spec": {"containers": [{"name": "w", "image": "busybox"}]}}}
    )
    body = render_pod(spec, "ns", "p", "h", name, controller_uid)
    body["status"] = {"phase": "Running"}
    return body


def _workspace(name: str, owner_references: list[dict[str, Any]], thash: str = "aaaaaa",
               claim_uid: str = "") -> WorkspaceEntry:  # fmt: skip
    spec: dict[str, Any] = {"presetRef": {"name": "p"}, "templateHash": thash}
    if claim_uid:
        spec.update(owner="al", claimRef={"name": "c", "uid": claim_uid})
    return WorkspaceEntry.from_body(
        {
            "metadata": {"namespace": "ns", "name": name, "uid": f"{name}-uid",
                         "resourceVersion": "1", "ownerReferences": owner_references,
                         "creationTimestamp": "2026-12-01T11:00:00Z"},
            "spec": spec,
            "status": {"phase": "Claimed" if claim_uid else "Ready",
                       "readyAt": "2026-12-01T11:01:00Z"},
        }
    )  # fmt: skip


def _ref(kind: str, name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": "prewarm.dev/v1alpha1", "kind": kind, "name": name, "uid": uid,
            "controller": True}  # fmt: skip


def test_the_runtime_gives_the_pool_and_claims_only_trusted_workspaces() -> None:
    preset = PresetEntry.from_body({"metadata": {"namespace": "ns", "name": "p", "uid": "puid"}})
    own = _workspace("own", [_ref("Preset", "p", "puid")])
    planted = _workspace("planted", [])  # names the preset, nobody controls it
    orphan = _workspace("orphan", [_ref("Preset", "p", "old-puid")])
    stale = _workspace("stale", [_ref("Preset", "p", "puid")], thash="0bd0bd")
    hijacked_pod = _workspace("hijacked", [_ref("Preset", "p", "puid")])
    claimed = _workspace("claimed", [_ref("WorkspaceClaim", "c", "cuid")], claim_uid="cuid")
    forged = _workspace("forged", [_ref("Preset", "p", "puid")], claim_uid="cuid")
    pods = {
        ("ns", "own"): [PodEntry.from_body(_pod("own", "own-uid"))],
        ("ns", "hijacked"): [PodEntry.from_body(_pod("hijacked", None))],
        # A pod that only copies the label is not the workspace's pod.
        ("ns", "stale"): [PodEntry.from_body(_pod("someone-elses", None))],
    }
    rt = Runtime(settings=Settings(), kube=None, ledger=None)  # type: ignore[arg-type]
    rt.presets = {("ns", "p"): [preset]}
    rt.workspaces = {("ns", "p"): [own, planted, orphan, stale, hijacked_pod, claimed, forged]}
    rt.pods = pods
    rt.claims = {}
    trusted = rt.workspaces_of(("ns", "p"))
    assert [w.name for w in trusted] == ["own", "stale", "claimed"]
    assert rt.pod("ns", "stale") is None
    # A claim is offered the current, trusted, Ready one only (the stale one is
    # the pool's to delete as outdated).
    decision = decide_claim(
        PresetView(exists=True, template_hash="aaaaaa"), [w.as_instance() for w in trusted]
    )
    assert decision.candidates == ("own",)
    # Each foreign workspace is remembered (logged once), and forgotten with it.
    assert {uid for uid, m in rt.memory.workspaces.items() if m.foreign} == {
        "planted-uid", "orphan-uid", "hijacked-uid", "forged-uid"
    }  # fmt: skip
    # Without its preset, only the claimed one remains (and no warning).
    rt.presets = {}
    rt.memory.workspaces.clear()
    assert [w.name for w in rt.workspaces_of(("ns", "p"))] == ["claimed"]
    assert not rt.memory.workspaces
