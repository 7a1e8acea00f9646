"""The models parse samples and API objects, round-trip, and reject what the CRD rejects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from prewarm.api import (
    ClaimPhase,
    ClaimSource,
    ConditionStatus,
    PrebuildStatus,
    PrebuiltWorkspace,
    Preset,
    PresetSpec,
    WorkspaceClaim,
    WorkspacePhase,
    pool_selector,
)

SAMPLES = Path(__file__).resolve().parents[2] / "crds" / "samples"
MODEL_OF_KIND: dict[str, type[BaseModel]] = {
    "Preset": Preset,
    "PrebuiltWorkspace": PrebuiltWorkspace,
    "WorkspaceClaim": WorkspaceClaim,
}


def load_sample(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SAMPLES / name).read_text())
    return doc


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_sample_parses_and_round_trips(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        model = MODEL_OF_KIND[doc["kind"]].model_validate(doc)
        again = type(model).model_validate(dump(model))
        assert again == model
        assert dump(again) == dump(model)


def test_basic_sample_values() -> None:
    preset = Preset.model_validate(load_sample("preset-basic.yaml"))
    assert preset.metadata.name == "basic"
    assert preset.spec.prebuilds.instances == 3
    assert preset.spec.prebuilds.timezone == "UTC"
    assert preset.spec.prebuilds.ttl is None
    assert preset.spec.failure_policy.hard_limit is None
    assert [p.name for p in preset.spec.parameters] == ["WORKSPACE_SIZE", "GIT_REPO"]
    assert preset.spec.template.spec.containers[0]["image"].startswith("docker.io/library/busybox")


def test_scheduled_sample_values() -> None:
    spec = Preset.model_validate(load_sample("preset-scheduled.yaml")).spec
    assert spec.prebuilds.timezone == "Europe/Berlin"
    assert spec.prebuilds.ttl == timedelta(hours=12)
    assert [(s.cron, s.instances) for s in spec.prebuilds.schedules] == [
        ("* 8-18 * * MON-FRI", 10),
        ("* 0-5 * * *", 0),
    ]
    policy = spec.failure_policy
    assert policy.hard_limit == 5
    assert policy.backoff_base == timedelta(seconds=30)
    assert policy.backoff_max == timedelta(minutes=10)
    assert policy.readiness_timeout == timedelta(minutes=5)
    assert spec.agent.on_claim[0] == "/bin/sh"


def test_claim_sample_values() -> None:
    claim = WorkspaceClaim.model_validate(load_sample("workspaceclaim.yaml"))
    assert claim.spec.preset_ref.name == "basic"
    assert claim.spec.owner == "alice"
    # No Secret to create first: applied alone, it binds (tests/e2e/test_samples.py).
    assert claim.spec.owner_secret_ref is None
    assert claim.status.phase is None


def test_pod_spec_fields_pass_through_untouched() -> None:
    doc = load_sample("preset-scheduled.yaml")
    preset = Preset.model_validate(doc)
    dumped = preset.spec.template.spec.model_dump(mode="json", by_alias=True)
    assert dumped == doc["spec"]["template"]["spec"]
    assert dumped["volumes"] == [{"name": "workspace", "emptyDir": {}}]


def test_durations_serialise_as_go_strings() -> None:
    preset = Preset.model_validate(load_sample("preset-scheduled.yaml"))
    policy = dump(preset)["spec"]["failurePolicy"]
    assert policy == {
        "hardLimit": 5,
        "backoffBase": "30s",
        "backoffMax": "10m",
        "readinessTimeout": "5m",
    }


def test_snake_case_names_are_accepted() -> None:
    spec = PresetSpec(
        template={"spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        failure_policy={"hard_limit": 0, "readiness_timeout": "90s"},
    )
    assert spec.failure_policy.hard_limit == 0
    assert dump(spec)["failurePolicy"] == {"hardLimit": 0, "readinessTimeout": "1m30s"}


def test_status_as_written_by_the_api_server() -> None:
    obj = {
        "apiVersion": "prewarm.dev/v1alpha1",
        "kind": "Preset",
        "metadata": {
            "name": "basic",
            "namespace": "team-a",
            "uid": "6f1c",
            "generation": 4,
            "resourceVersion": "812",
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {
            "observedGeneration": 4,
            "templateHash": "0123456789",
            "desired": 3,
            "ready": 2,
            "starting": 1,
            "prebuildStatus": "HardLimited",
            "backoffUntil": "2026-01-02T03:10:00Z",
            "lastFailure": {"reason": "ImagePullFailed", "message": "no such image"},
            "selector": "prewarm.dev/preset=basic",
            "conditions": [
                {
                    "type": "HardLimited",
                    "status": "True",
                    "reason": "PrebuildFailureLimitReached",
                    "message": "3 consecutive prebuilds failed",
                    "lastTransitionTime": "2026-01-02T03:09:00Z",
                    "observedGeneration": 4,
                }
            ],
            "someFutureField": 1,
        },
    }
    preset = Preset.model_validate(obj)
    assert preset.metadata.generation == 4
    assert preset.status.prebuild_status is PrebuildStatus.HARD_LIMITED
    assert preset.status.conditions[0].status is ConditionStatus.TRUE
    assert preset.status.backoff_until == datetime(2026, 1, 2, 3, 10, tzinfo=UTC)
    assert preset.status.selector == pool_selector("basic")
    status = dump(preset)["status"]
    assert status["conditions"][0]["lastTransitionTime"] == "2026-01-02T03:09:00Z"
    assert "someFutureField" not in status


def test_workspace_and_claim_status() -> None:
    workspace = PrebuiltWorkspace.model_validate(
        {
            "metadata": {"name": "basic-x7k2p"},
            "spec": {"presetRef": {"name": "basic"}, "templateHash": "0123456789", "owner": ""},
            "status": {
                "phase": "Ready",
                "podName": "basic-x7k2p",
                "readyAt": "2026-01-02T03:04:05Z",
            },
        }
    )
    assert workspace.status.phase is WorkspacePhase.READY
    assert not workspace.spec.is_claimed
    claim = WorkspaceClaim.model_validate(
        {
            "spec": {"presetRef": {"name": "basic"}, "owner": "alice"},
            "status": {"phase": "Bound", "source": "cold", "workspaceName": "basic-x7k2p"},
        }
    )
    assert claim.status.phase is ClaimPhase.BOUND
    assert claim.status.source is ClaimSource.COLD


def _preset_spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}
    spec.update(changes)
    return spec


# Each case is also rejected by the API server (tests/e2e/test_crds.py): the
# model mirrors the schema so code building objects fails early, the same way.
@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (_preset_spec(template={"spec": {"containers": []}}), "containers"),
        (_preset_spec(template={"spec": {}}), "containers"),
        (_preset_spec(prebuilds={"instances": -1}), "instances"),
        (_preset_spec(prebuilds={"schedules": [{"cron": "61 * * * *", "instances": 1}]}), "cron"),
        (_preset_spec(prebuilds={"timezone": "Mars/Olympus Mons"}), "timezone"),
        (_preset_spec(prebuilds={"ttl": "0s"}), "ttl"),
        (_preset_spec(prebuilds={"ttl": "1 hour"}), "ttl"),
        (_preset_spec(prebuilds={"ttl": 3600}), "ttl"),
        (_preset_spec(failurePolicy={"hardLimit": -1}), "hardLimit"),
        (_preset_spec(failurePolicy={"backoffBase": "1m", "backoffMax": "30s"}), "backoffMax"),
        (_preset_spec(failurePolicy={"readinessTimeout": "0m"}), "readinessTimeout"),
        (_preset_spec(parameters=[{"name": "A"}, {"name": "A"}]), "duplicate parameter"),
        (_preset_spec(parameters=[{"name": "1st"}]), "name"),
    ],
)
def test_invalid_preset_spec_is_rejected(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        PresetSpec.model_validate(spec)


@pytest.mark.parametrize(
    "spec",
    [
        {"presetRef": {"name": "basic"}},
        {"presetRef": {"name": "basic"}, "owner": ""},
        {"owner": "alice"},
    ],
)
def test_invalid_claim_spec_is_rejected(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        WorkspaceClaim.model_validate({"spec": spec})


def test_template_hash_must_be_hex() -> None:
    with pytest.raises(ValidationError, match="templateHash"):
        PrebuiltWorkspace.model_validate(
            {"spec": {"presetRef": {"name": "p"}, "templateHash": "NOT-A-HASH"}}
        )


def test_workspace_status_patch_writes_only_what_is_set() -> None:
    from datetime import UTC, datetime

    from prewarm.api.workspace import (
        PrebuiltWorkspaceStatus,
        WorkspaceFailure,
        WorkspacePhase,
        WorkspaceWaiting,
        workspace_status_patch,
    )

    at = datetime(2026, 11, 29, 12, 0, 0, 250000, tzinfo=UTC)
    failed = PrebuiltWorkspaceStatus(
        phase=WorkspacePhase.FAILED,
        failed_at=at,
        failure=WorkspaceFailure(reason="CrashLoop", message="restarted 3 times"),
    )
    assert workspace_status_patch(failed, "42") == {
        "metadata": {"resourceVersion": "42"},
        "status": {
            "phase": "Failed",
            "failedAt": "2026-11-29T12:00:00.250000Z",
            "failure": {"reason": "CrashLoop", "message": "restarted 3 times"},
            "waiting": None,  # a merge patch's null: whatever it waited for is over
        },
    }
    claimed = PrebuiltWorkspaceStatus(
        phase=WorkspacePhase.CLAIMED, owner="ann", reinit_generation=2
    )
    assert workspace_status_patch(claimed) == {
        "status": {"phase": "Claimed", "owner": "ann", "reinitGeneration": 2, "waiting": None}
    }
    building = PrebuiltWorkspaceStatus(
        phase=WorkspacePhase.BUILDING,
        waiting=WorkspaceWaiting(reason="Unschedulable", message="0/1 nodes are available"),
    )
    assert workspace_status_patch(building) == {
        "status": {
            "phase": "Building",
            "waiting": {"reason": "Unschedulable", "message": "0/1 nodes are available"},
        }
    }
