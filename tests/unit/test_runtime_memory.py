"""The operator's memory has owners: what belongs to deleted objects is forgotten."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prewarm.api.workspace import WorkspacePhase
from prewarm.handlers.runtime import Runtime
from prewarm.handlers.watched import ClaimEntry, PresetEntry, WorkspaceEntry
from prewarm.settings import Settings

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _runtime(presets: dict[Any, list[Any]], workspaces: dict[Any, list[Any]],
             claims: dict[Any, list[Any]]) -> Runtime:  # fmt: skip
    rt = Runtime(settings=Settings(), kube=None, ledger=None)  # type: ignore[arg-type]
    rt.presets, rt.workspaces, rt.claims = presets, workspaces, claims
    return rt


def _remember_everything(rt: Runtime, n: int) -> None:
    for i in range(n):
        rt.memory.preset(("ns", f"p{i}")).status_held_since = 1.0
        objects = rt.memory.preset_object(f"puid{i}")
        objects.recorded = ("h", 3)
        objects.notified.add(("h", None))
        rt.memory.workspace(f"wuid{i}").phase_written = (WorkspacePhase.READY, "1")
        rt.memory.claim(("ns", f"c{i}")).recorded_uid = f"cuid{i}"


def _workspace(i: int) -> WorkspaceEntry:
    return WorkspaceEntry("ns", f"w{i}", f"wuid{i}", "1", "p0", "h", "", WorkspacePhase.READY,
                          NOW, NOW, None, None, False)  # fmt: skip


def test_memory_of_a_thousand_deleted_objects_is_swept() -> None:
    rt = _runtime({}, {}, {})
    _remember_everything(rt, 1000)
    assert rt.memory_sizes()["workspaces"] == 1000
    rt.sweep()
    assert rt.memory_sizes() == dict.fromkeys(rt.memory_sizes(), 0)


def test_memory_of_objects_still_there_is_kept() -> None:
    preset = PresetEntry.from_body({"metadata": {"namespace": "ns", "name": "p0", "uid": "puid0"}})
    claim = ClaimEntry.from_body(
        {"metadata": {"namespace": "ns", "name": "c0", "uid": "cuid0"}, "spec": {}}
    )
    rt = _runtime({("ns", "p0"): [preset]}, {("ns", "p0"): [_workspace(0)]},
                  {("ns", "c0"): [claim]})  # fmt: skip
    _remember_everything(rt, 3)
    rt.sweep()
    assert rt.memory_sizes() == {
        "presets": 1, "preset_uids": 1, "workspaces": 1, "claims": 1, "timers": 0,
        "verdicts": 0,
    }  # fmt: skip


def test_deleted_events_forget_at_once() -> None:
    rt = _runtime({}, {}, {})
    _remember_everything(rt, 1)
    rt.forget_preset(("ns", "p0"), "puid0")
    rt.forget_workspace("wuid0")
    rt.forget_claim(("ns", "c0"))
    assert rt.memory_sizes() == dict.fromkeys(rt.memory_sizes(), 0)


def test_a_preset_that_goes_wakes_those_waiting_for_global_room() -> None:
    rt = _runtime({}, {}, {})
    rt.memory.preset(("ns", "big")).starting = 200
    rt.memory.preset(("ns", "small")).waiting_for_global_room = True
    assert rt.global_starting(("ns", "small")) == 200
    rt.forget_preset(("ns", "big"), None)
    assert rt.global_starting(("ns", "small")) == 0
    assert not rt.memory.preset(("ns", "small")).waiting_for_global_room
    assert len(rt.queue) == 1  # woken: queued for a pass


def test_entries_read_claim_parameters() -> None:
    """Issue 16: the claim's spec.parameters and a workspace's spec.claimParameters."""
    from prewarm.api.preset import Parameter
    from prewarm.handlers.watched import WorkspaceEntry

    claim = ClaimEntry.from_body(
        {
            "metadata": {"namespace": "ns", "name": "c0", "uid": "cuid0"},
            "spec": {"parameters": [{"name": "a", "value": "1"}, {"name": "b"}, {"bad": 1}]},
        }
    )
    assert claim.parameters == (Parameter(name="a", value="1"), Parameter(name="b", value=""))
    ws = WorkspaceEntry.from_body(
        {
            "metadata": {"namespace": "ns", "name": "w", "uid": "wuid"},
            "spec": {
                "presetRef": {"name": "p"},
                "templateHash": "0123456789",
                "claimParameters": [{"name": "a", "value": "1"}],
            },
        }
    )
    assert ws.claim_parameters == (("a", "1"),)


def _owned(i: int, controller_uid: str) -> WorkspaceEntry:
    body = {
        "metadata": {
            "namespace": "ns", "name": f"w{i}", "uid": f"wuid{i}", "resourceVersion": "1",
            "ownerReferences": [{"apiVersion": "prewarm.dev/v1alpha1", "kind": "Preset",
                                 "name": "p0", "uid": controller_uid, "controller": True}],
        },
        "spec": {"presetRef": {"name": "p0"}, "templateHash": "a" * 16},
    }  # fmt: skip
    return WorkspaceEntry.from_body(body)


def test_membership_verdicts_follow_their_workspace_and_are_forgotten_with_it() -> None:
    preset = PresetEntry.from_body({"metadata": {"namespace": "ns", "name": "p0", "uid": "puid0"}})
    ours, theirs = _owned(0, "puid0"), _owned(1, "someone-else")
    index: dict[Any, list[Any]] = {("ns", "p0"): [ours, theirs]}
    rt = _runtime({("ns", "p0"): [preset]}, index, {})
    rt.pods = {}
    assert [w.name for w in rt.workspaces_of(("ns", "p0"))] == ["w0"]
    assert [w.name for w in rt.workspaces_of(("ns", "p0"))] == ["w0"]  # remembered
    assert rt.memory_sizes()["verdicts"] == 2
    # A new version of a workspace (a new index entry) is decided again.
    index[("ns", "p0")] = [_owned(0, "someone-else"), _owned(1, "puid0")]
    assert [w.name for w in rt.workspaces_of(("ns", "p0"))] == ["w1"]
    rt.forget_workspace("wuid0")
    assert rt.memory_sizes()["verdicts"] == 1
    rt.workspaces = {}
    rt.sweep()
    assert rt.memory_sizes()["verdicts"] == 0


def test_a_claim_looking_for_one_workspace_judges_only_that_one() -> None:
    preset = PresetEntry.from_body({"metadata": {"namespace": "ns", "name": "p0", "uid": "puid0"}})
    index: dict[Any, list[Any]] = {
        ("ns", "p0"): [_owned(0, "puid0"), _owned(1, "puid0"), _owned(2, "someone-else")]
    }
    rt = _runtime({("ns", "p0"): [preset]}, index, {})
    rt.pods = {}
    assert [w.name for w in rt.workspaces_of(("ns", "p0"), lambda w: w.name == "w1")] == ["w1"]
    assert rt.workspaces_of(("ns", "p0"), lambda w: w.name == "w2") == []  # still foreign
    assert rt.memory_sizes()["verdicts"] == 2


def test_a_preset_deleted_while_the_ledger_was_down_leaves_the_operator_ready() -> None:
    # The deploy-manifest node test's operator stayed 503 for good: a pass had
    # found PostgreSQL not yet open, and its preset was deleted before another
    # pass could say the ledger answered.
    rt = _runtime({}, {}, {})
    rt.ledger_read(("ns", "gone"), answered=False)
    rt.ledger_read(("ns", "kept"), answered=False)
    assert not rt.ledger_ok
    rt.forget_preset(("ns", "gone"), "uid-gone")
    assert not rt.ledger_ok, "a live preset's pass could not read the ledger"
    rt.ledger_read(("ns", "kept"), answered=True)
    assert rt.ledger_ok
    # A pass in flight when its preset went may write its answer back: the sweep forgets it.
    rt.ledger_read(("ns", "late"), answered=False)
    rt.sweep()
    assert rt.ledger_ok


def _preset_entry(generation: int, image: str) -> PresetEntry:
    template = {"spec": {"containers": [{"name": "ws", "image": image}]}}
    return PresetEntry.from_body(
        {
            "metadata": {"namespace": "ns", "name": "p0", "uid": "puid0", "generation": generation},
            "spec": {"template": template, "prebuilds": {"instances": 1}},
        }
    )


def test_a_presets_spec_is_parsed_once_per_generation() -> None:
    rt = _runtime({}, {}, {})
    first, thash = rt.parsed_spec(_preset_entry(1, "a"))
    assert first is not None
    assert thash
    again, same_hash = rt.parsed_spec(_preset_entry(1, "a"))
    assert again is first
    assert same_hash == thash
    newer, new_hash = rt.parsed_spec(_preset_entry(2, "b"))
    assert newer is not first
    assert new_hash != thash


def test_a_spec_that_does_not_parse_is_remembered_as_none() -> None:
    rt = _runtime({}, {}, {})
    broken = PresetEntry.from_body(
        {"metadata": {"uid": "puid0", "generation": 1}, "spec": {"prebuilds": "many"}}
    )
    assert rt.parsed_spec(broken) == (None, "")
