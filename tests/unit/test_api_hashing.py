from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from prewarm.api import PresetSpec, template_hash

SAMPLE = Path(__file__).resolve().parents[2] / "crds" / "samples" / "preset-scheduled.yaml"


def base_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())["spec"]
    return spec


def hash_of(spec: dict[str, Any]) -> str:
    return template_hash(PresetSpec.model_validate(spec))


def test_shape_and_stability() -> None:
    digest = hash_of(base_spec())
    assert len(digest) == 10
    assert int(digest, 16) >= 0
    assert hash_of(base_spec()) == digest


def test_pinned_value() -> None:
    # Changing the hash input rolls every pool on upgrade; if this fails on
    # purpose, say so in docs/decisions.md and the release notes.
    spec = {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    assert hash_of(spec) == "52e6203529"


def _set(path: str, value: Any) -> dict[str, Any]:
    spec = base_spec()
    *parents, leaf = path.split(".")
    node: Any = spec
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[leaf] = value
    return spec


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("prebuilds.instances", 7),
        ("prebuilds.schedules", []),
        ("prebuilds.timezone", "UTC"),
        ("prebuilds.ttl", "1h"),
        ("failurePolicy.hardLimit", 0),
        ("failurePolicy.backoffMax", "1h"),
        ("failurePolicy.readinessTimeout", "30m"),
        # Claim parameters never reach the pod template: declaring one rolls nothing.
        ("claimParameters", [{"name": "branch", "default": "main"}]),
    ],
)
def test_pool_sizing_and_failure_policy_do_not_change_the_hash(path: str, value: Any) -> None:
    assert hash_of(_set(path, value)) == hash_of(base_spec())


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("template.spec.containers.0.image", "docker.io/library/python:3.13-slim"),
        ("template.spec.containers.0.command", ["sleep", "1d"]),
        ("template.spec.nodeSelector", {"disk": "ssd"}),
        ("template.metadata.labels", {"team": "ml"}),
        ("template.metadata.annotations", {}),
        ("parameters.0.value", "3.13"),
        ("agent.onClaim", ["true"]),
        ("agent.image", "ghcr.io/example/prewarm-agent:2"),
    ],
)
def test_what_a_workspace_is_changes_the_hash(path: str, value: Any) -> None:
    assert hash_of(_set(path, value)) != hash_of(base_spec())


def test_new_parameter_changes_the_hash() -> None:
    spec = base_spec()
    spec["parameters"].append({"name": "EXTRA", "value": ""})
    assert hash_of(spec) != hash_of(base_spec())


def test_equivalent_spellings_hash_the_same() -> None:
    plain: dict[str, Any] = {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}
    explicit = copy.deepcopy(plain)
    explicit["template"]["metadata"] = {"labels": {}, "annotations": {}}
    explicit["agent"] = {"onClaim": []}
    explicit["parameters"] = []
    assert hash_of(explicit) == hash_of(plain)


def test_parameter_order_does_not_matter() -> None:
    spec = base_spec()
    reordered = copy.deepcopy(spec)
    reordered["parameters"].reverse()
    assert hash_of(reordered) == hash_of(spec)


def test_pod_spec_key_order_does_not_matter() -> None:
    spec = base_spec()
    reordered = copy.deepcopy(spec)
    pod = reordered["template"]["spec"]
    reordered["template"]["spec"] = dict(reversed(list(pod.items())))
    assert hash_of(reordered) == hash_of(spec)
