from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import yaml

from prewarm.api.hashing import template_hash
from prewarm.api.preset import Preset
from prewarm.planning.failures import Verdict, classify, pod_view
from prewarm.planning.render import render_pod, render_workspace

REPO = Path(__file__).resolve().parents[2]


def _sample() -> Preset:
    return Preset.model_validate(
        yaml.safe_load((REPO / "crds/samples/preset-basic.yaml").read_text())
    )


def test_workspace_is_owned_by_its_preset_and_labelled() -> None:
    ws = render_workspace("ns", "basic", "uid-1", "abc")
    assert ws["metadata"]["generateName"] == "basic-"
    assert ws["metadata"]["labels"] == {
        "prewarm.dev/preset": "basic",
        "prewarm.dev/template-hash": "abc",
    }
    (owner,) = ws["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("Preset", "uid-1", True)
    assert ws["spec"] == {"presetRef": {"name": "basic"}, "templateHash": "abc"}


def test_pod_carries_template_parameters_and_owner() -> None:
    preset = _sample()
    h = template_hash(preset.spec)
    pod = render_pod(preset.spec, "ns", "basic", h, "basic-x1", "ws-uid")
    meta = pod["metadata"]
    assert meta["name"] == "basic-x1"
    assert meta["labels"]["app.kubernetes.io/name"] == "workspace"
    assert meta["labels"]["prewarm.dev/workspace"] == "basic-x1"
    assert meta["labels"]["prewarm.dev/template-hash"] == h
    assert json.loads(meta["annotations"]["prewarm.dev/parameters"])["WORKSPACE_SIZE"] == "small"
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["WORKSPACE_SIZE"] == "small"
    assert meta["ownerReferences"][0]["uid"] == "ws-uid"
    # The template's own fields pass through untouched.
    assert pod["spec"]["terminationGracePeriodSeconds"] == 5


def test_dry_run_pod_has_no_owner() -> None:
    preset = _sample()
    pod = render_pod(preset.spec, "ns", "basic", "h", "basic-dry-run", None)
    assert "ownerReferences" not in pod["metadata"]


def test_pod_view_reads_what_kwok_and_kubelet_write() -> None:
    pod = {
        "metadata": {"creationTimestamp": "2026-11-27T12:00:00Z"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available",
                }
            ],
            "containerStatuses": [
                {
                    "name": "ws",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}},
                }
            ],
        },
    }
    view = pod_view(pod)
    assert view.unschedulable_message == "0/3 nodes are available"
    assert view.containers[0].waiting_reason == "ImagePullBackOff"
    outcome = classify(view, view.created_at, timedelta(minutes=5), 3)
    assert outcome.verdict is Verdict.FAILED


def test_a_rebind_cold_build_has_its_own_name() -> None:
    from prewarm.planning.render import cold_workspace_name

    first = cold_workspace_name("python", "0a1b2c3d-4e5f-6789-abcd-ef0123456789")
    assert first == "python-c0a1b2c3d4e5f"
    again = cold_workspace_name("python", "0a1b2c3d-4e5f-6789-abcd-ef0123456789", rebinds=2)
    assert again == "python-c0a1b2c3d4e5f-2"
