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


def test_claim_parameters_reach_the_cold_pod_and_workspace_never_the_template() -> None:
    """Issue 16: a cold start's pod is born with the claim's parameters where
    the agent reads them (with owner and generation 1), and its workspace
    records them; neither env nor the template hash changes."""
    from prewarm.planning.render import ClaimRef, claim_annotations

    preset = _sample()
    h = template_hash(preset.spec)
    params = (("branch", "main"), ("cpus", "2"))
    ref = ClaimRef("c", "cuid", "alice", parameters=params)
    ws = render_workspace("ns", "basic", "uid-1", h, claim=ref)
    assert ws["spec"]["claimParameters"] == [
        {"name": "branch", "value": "main"},
        {"name": "cpus", "value": "2"},
    ]
    cold = render_pod(preset.spec, "ns", "basic", h, "basic-c1", "ws-uid", claim=ref)
    pool = render_pod(preset.spec, "ns", "basic", h, "basic-x1", "ws-uid")
    annotations = cold["metadata"]["annotations"]
    assert json.loads(annotations["prewarm.dev/claim-parameters"]) == {
        "branch": "main",
        "cpus": "2",
    }
    assert annotations["prewarm.dev/reinit-generation"] == "1"
    assert "prewarm.dev/claim-parameters" not in pool["metadata"]["annotations"]
    assert cold["spec"] == pool["spec"]  # the pod template is the pool's
    assert claim_annotations("alice", 3, params) == {
        "prewarm.dev/owner": "alice",
        "prewarm.dev/reinit-generation": "3",
        "prewarm.dev/claim-parameters": '{"branch": "main", "cpus": "2"}',
    }
    # No parameters: no annotation, no field (a pool workspace's take adds nothing).
    assert "prewarm.dev/claim-parameters" not in claim_annotations("alice", 3)
    plain = render_workspace("ns", "basic", "uid-1", h, claim=ClaimRef("c", "cuid", "alice"))
    assert "claimParameters" not in plain["spec"]
