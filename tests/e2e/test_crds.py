"""The CRDs against a real API server: schema, CEL rules, defaults, printer columns, scale.

The session fixture `cluster` installs crds/*.yaml; each test gets a fresh
`namespace`. Every bad manifest is its own test case and must be rejected
with an error that names the offending field, so a user reading kubectl's
output knows what to fix.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from prewarm.api import Preset, WorkspaceClaim, pool_selector, template_hash
from prewarm.commands.claim import claim_manifest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "crds" / "samples"
API_VERSION = "prewarm.dev/v1alpha1"


class Cluster(Protocol):
    kubeconfig: Path

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...


def preset(name: str = "p", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}},
        "prebuilds": {"instances": 1},
    }
    body.update(spec)
    return {"apiVersion": API_VERSION, "kind": "Preset", "metadata": {"name": name}, "spec": body}


def with_prebuilds(**prebuilds: Any) -> dict[str, Any]:
    return preset(prebuilds={"instances": 1, **prebuilds})


def claim(name: str = "c", **spec: Any) -> dict[str, Any]:
    manifest = claim_manifest(name, "p", "alice")
    body = {**manifest["spec"], **spec}
    manifest["spec"] = {k: v for k, v in body.items() if v is not None}
    return manifest


def workspace(name: str = "w", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"presetRef": {"name": "p"}, "templateHash": "0123456789"}
    body.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "PrebuiltWorkspace",
        "metadata": {"name": name},
        "spec": body,
    }


@dataclass(frozen=True)
class Patch:
    """A change to an object created first: (resource, patch type, patch, subresource)."""

    resource: str
    type: str
    patch: Any
    subresource: str | None = None


@dataclass(frozen=True)
class BadCase:
    id: str
    manifest: dict[str, Any]
    expect: tuple[str, ...]
    """Substrings the error must contain: the field path, and what is wrong."""
    patches: tuple[Patch, ...] = field(default=())
    """If set, `manifest` is valid; these patches are applied in order, the last must fail."""


def merge(resource: str, patch: Any, subresource: str | None = None) -> Patch:
    return Patch(resource, "merge", patch, subresource)


BAD_CASES = [
    # --- Preset, rejected on create
    BadCase("instances-negative", with_prebuilds(instances=-1), ("spec.prebuilds.instances",)),
    BadCase(
        "instances-wrong-type",
        with_prebuilds(instances="three"),
        ("spec.prebuilds.instances", "integer"),
    ),
    BadCase(
        "cron-out-of-range",
        with_prebuilds(schedules=[{"cron": "61 * * * *", "instances": 2}]),
        ("spec.prebuilds.schedules[0].cron", "five-field cron"),
    ),
    BadCase(
        "cron-six-fields",
        with_prebuilds(schedules=[{"cron": "0 0 9 * * MON", "instances": 2}]),
        ("spec.prebuilds.schedules[0].cron", "five-field cron"),
    ),
    BadCase(
        "cron-macro",
        with_prebuilds(schedules=[{"cron": "@daily", "instances": 2}]),
        ("spec.prebuilds.schedules[0].cron", "five-field cron"),
    ),
    BadCase(
        "schedule-instances-negative",
        with_prebuilds(schedules=[{"cron": "* * * * *", "instances": -2}]),
        ("spec.prebuilds.schedules[0].instances",),
    ),
    BadCase(
        "schedule-without-instances",
        with_prebuilds(schedules=[{"cron": "* * * * *"}]),
        ("spec.prebuilds.schedules[0].instances", "Required"),
    ),
    BadCase(
        "timezone-with-space",
        with_prebuilds(timezone="Mars/Olympus Mons"),
        ("spec.prebuilds.timezone",),
    ),
    BadCase("ttl-zero", with_prebuilds(ttl="0s"), ("spec.prebuilds.ttl", "greater than 0s")),
    BadCase("ttl-not-a-duration", with_prebuilds(ttl="1 day"), ("spec.prebuilds.ttl",)),
    BadCase(
        "missing-template",
        {**preset(), "spec": {"prebuilds": {"instances": 1}}},
        ("spec.template", "Required"),
    ),
    BadCase(
        "empty-containers",
        preset(template={"spec": {"containers": []}}),
        ("spec.template.spec.containers", "at least one container"),
    ),
    BadCase(
        "no-containers",
        preset(template={"spec": {"restartPolicy": "Always"}}),
        ("spec.template.spec.containers",),
    ),
    BadCase(
        "backoff-max-below-base",
        preset(failurePolicy={"backoffBase": "5m", "backoffMax": "30s"}),
        ("spec.failurePolicy.backoffMax", "backoffBase"),
    ),
    BadCase(
        "hard-limit-negative",
        preset(failurePolicy={"hardLimit": -1}),
        ("spec.failurePolicy.hardLimit",),
    ),
    BadCase(
        "readiness-timeout-zero",
        preset(failurePolicy={"readinessTimeout": "0m"}),
        ("spec.failurePolicy.readinessTimeout", "greater than 0s"),
    ),
    BadCase(
        "duplicate-parameter-names",
        preset(parameters=[{"name": "REPO", "value": "a"}, {"name": "REPO", "value": "b"}]),
        ("spec.parameters[1]", "Duplicate"),
    ),
    BadCase(
        "parameter-name-not-an-env-var",
        preset(parameters=[{"name": "1-repo", "value": "a"}]),
        ("spec.parameters[0].name",),
    ),
    BadCase(
        "on-claim-not-a-list",
        preset(agent={"onClaim": "git pull"}),
        ("spec.agent.onClaim", "array"),
    ),
    BadCase("unknown-field", preset(prebuild={"instances": 1}), ("spec.prebuild", "unknown field")),
    # --- Preset spec.claimParameters (issue 16)
    BadCase(
        "claim-parameter-pattern-on-int",
        preset(claimParameters=[{"name": "n", "type": "int", "pattern": "[0-9]+"}]),
        ("spec.claimParameters[0].pattern", "needs type string"),
    ),
    BadCase(
        "claim-parameter-enum-and-pattern",
        preset(claimParameters=[{"name": "n", "enum": ["a"], "pattern": "a"}]),
        ("spec.claimParameters[0].enum", "exclude each other"),
    ),
    BadCase(
        "claim-parameter-required-with-default",
        preset(claimParameters=[{"name": "n", "required": True, "default": "a"}]),
        ("spec.claimParameters[0].default", "required"),
    ),
    BadCase(
        "claim-parameter-default-not-in-enum",
        preset(claimParameters=[{"name": "n", "enum": ["a", "b"], "default": "c"}]),
        ("spec.claimParameters[0].default", "one of its enum"),
    ),
    BadCase(
        "claim-parameter-int-enum-not-a-number",
        preset(claimParameters=[{"name": "n", "type": "int", "enum": ["1", "two"]}]),
        ("spec.claimParameters[0].type", "decimal integers"),
    ),
    BadCase(
        "claim-parameter-bool-default",
        preset(claimParameters=[{"name": "n", "type": "bool", "default": "yes"}]),
        ("spec.claimParameters[0].type", "true or false"),
    ),
    BadCase(
        "claim-parameter-unknown-type",
        preset(claimParameters=[{"name": "n", "type": "float"}]),
        ("spec.claimParameters[0].type", "Unsupported value"),
    ),
    BadCase(
        "claim-parameter-duplicate-name",
        preset(claimParameters=[{"name": "n"}, {"name": "n", "type": "int"}]),
        ("spec.claimParameters[1]", "Duplicate"),
    ),
    # --- Preset status, through the status subresource
    BadCase(
        "preset-status-bad-prebuild-status",
        preset(),
        ("status.prebuildStatus", "Unsupported value"),
        (merge("preset/p", {"status": {"prebuildStatus": "Sleeping"}}, "status"),),
    ),
    # --- WorkspaceClaim
    BadCase("claim-without-owner", claim(owner=None), ("spec.owner", "Required")),
    BadCase("claim-empty-owner", claim(owner=""), ("spec.owner",)),
    BadCase("claim-without-preset", claim(presetRef=None), ("spec.presetRef", "Required")),
    BadCase(
        "claim-owner-changed",
        claim(),
        ("spec.owner", "immutable"),
        (merge("workspaceclaim/c", {"spec": {"owner": "mallory"}}),),
    ),
    BadCase(
        "claim-preset-changed",
        claim(),
        ("spec.presetRef", "immutable"),
        (merge("workspaceclaim/c", {"spec": {"presetRef": {"name": "other"}}}),),
    ),
    BadCase(
        "claim-secret-added-later",
        claim(),
        ("spec.ownerSecretRef",),
        (merge("workspaceclaim/c", {"spec": {"ownerSecretRef": {"name": "creds"}}}),),
    ),
    BadCase(
        "claim-secret-changed",
        claim(ownerSecretRef={"name": "creds"}),
        ("spec.ownerSecretRef", "immutable"),
        (merge("workspaceclaim/c", {"spec": {"ownerSecretRef": {"name": "other-creds"}}}),),
    ),
    BadCase(
        "claim-parameter-name-not-a-name",
        claim(parameters=[{"name": "my-branch", "value": "x"}]),
        ("spec.parameters[0].name",),
    ),
    BadCase(
        "claim-parameter-value-too-long",
        claim(parameters=[{"name": "b", "value": "x" * 4097}]),
        ("spec.parameters[0].value", "4096"),
    ),
    BadCase(
        "claim-parameter-duplicate",
        claim(parameters=[{"name": "b", "value": "1"}, {"name": "b", "value": "2"}]),
        ("spec.parameters[1]", "Duplicate"),
    ),
    BadCase(
        "claim-parameters-changed",
        claim(parameters=[{"name": "b", "value": "1"}]),
        ("spec.parameters", "immutable"),
        (merge("workspaceclaim/c", {"spec": {"parameters": [{"name": "b", "value": "2"}]}}),),
    ),
    BadCase(
        "claim-parameters-added-later",
        claim(),
        ("spec.parameters", "cannot be added or removed"),
        (merge("workspaceclaim/c", {"spec": {"parameters": [{"name": "b", "value": "2"}]}}),),
    ),
    BadCase(
        "claim-status-bad-source",
        claim(),
        ("status.source", "Unsupported value"),
        (merge("workspaceclaim/c", {"status": {"source": "lukewarm"}}, "status"),),
    ),
    # --- PrebuiltWorkspace
    BadCase(
        "workspace-bad-template-hash",
        workspace(templateHash="Not A Hash"),
        ("spec.templateHash",),
    ),
    BadCase(
        "workspace-owner-changed",
        workspace(),
        ("spec.owner", "set once"),
        (
            merge("prebuiltworkspace/w", {"spec": {"owner": "alice"}}),
            merge("prebuiltworkspace/w", {"spec": {"owner": "mallory"}}),
        ),
    ),
    BadCase(
        "workspace-owner-cleared",
        workspace(owner="alice"),
        ("spec.owner",),
        (merge("prebuiltworkspace/w", {"spec": {"owner": ""}}),),
    ),
    BadCase(
        "workspace-owner-removed",
        workspace(owner="alice"),
        ("spec.owner",),
        (Patch("prebuiltworkspace/w", "json", [{"op": "remove", "path": "/spec/owner"}]),),
    ),
    BadCase(
        "workspace-preset-changed",
        workspace(),
        ("spec.presetRef", "immutable"),
        (merge("prebuiltworkspace/w", {"spec": {"presetRef": {"name": "other"}}}),),
    ),
    BadCase(
        "workspace-template-hash-changed",
        workspace(),
        ("spec.templateHash", "immutable"),
        (merge("prebuiltworkspace/w", {"spec": {"templateHash": "abcdef0123"}}),),
    ),
    BadCase(
        "workspace-claim-ref-changed",
        workspace(owner="alice", claimRef={"name": "c", "uid": "u-1"}),
        ("spec.claimRef",),
        (merge("prebuiltworkspace/w", {"spec": {"claimRef": {"name": "c2", "uid": "u-2"}}}),),
    ),
    BadCase(
        "workspace-claim-parameters-changed",
        workspace(owner="alice", claimParameters=[{"name": "b", "value": "1"}]),
        ("spec.claimParameters", "cannot change once set"),
        (
            merge(
                "prebuiltworkspace/w", {"spec": {"claimParameters": [{"name": "b", "value": "2"}]}}
            ),
        ),
    ),
    BadCase(
        "workspace-claim-parameters-removed",
        workspace(owner="alice", claimParameters=[{"name": "b", "value": "1"}]),
        ("spec.claimParameters", "cannot be removed once set"),
        (
            Patch(
                "prebuiltworkspace/w", "json", [{"op": "remove", "path": "/spec/claimParameters"}]
            ),
        ),
    ),
    BadCase(
        "workspace-status-bad-phase",
        workspace(),
        ("status.phase", "Unsupported value"),
        (merge("prebuiltworkspace/w", {"status": {"phase": "Warm"}}, "status"),),
    ),
]


def create(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def patch(
    cluster: Cluster, namespace: str, change: Patch, check: bool = True
) -> subprocess.CompletedProcess[str]:
    args = ["patch", "-n", namespace, change.resource, f"--type={change.type}"]
    args += ["-p", json.dumps(change.patch)]
    if change.subresource:
        args.append(f"--subresource={change.subresource}")
    return cluster.kubectl(*args, check=check)


def get_json(cluster: Cluster, namespace: str, resource: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "-n", namespace, resource, "-o", "json").stdout
    obj: dict[str, Any] = json.loads(out)
    return obj


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda c: c.id)
def test_bad_manifest_is_rejected_naming_the_field(
    cluster: Cluster, namespace: str, case: BadCase
) -> None:
    if case.patches:
        create(cluster, namespace, case.manifest)
        for change in case.patches[:-1]:
            patch(cluster, namespace, change)
        result = patch(cluster, namespace, case.patches[-1], check=False)
    else:
        result = cluster.kubectl(
            "create", "-n", namespace, "-f", "-", input=json.dumps(case.manifest), check=False
        )
    assert result.returncode != 0, f"accepted: {result.stdout}"
    for expected in case.expect:
        assert expected in result.stderr, result.stderr


def test_valid_baselines_are_accepted(cluster: Cluster, namespace: str) -> None:
    # Each bad case changes one thing in a valid baseline, so it can only be
    # rejected for the reason it names.
    for manifest in (preset(), claim(), workspace(), claim("c2", ownerSecretRef={"name": "s"})):
        create(cluster, namespace, manifest)
    create(cluster, namespace, workspace("w2", owner="alice", claimRef={"name": "c", "uid": "u"}))


def test_claim_parameters_are_accepted_and_defaulted(cluster: Cluster, namespace: str) -> None:
    """Issue 16: a preset declaring every kind of claim parameter, a claim
    setting them and a workspace recording them are accepted; the server's
    defaults (type string, required false, value "") parse."""
    declared = [
        {"name": "branch", "pattern": "[a-z/]+", "default": "main", "description": "git branch"},
        {"name": "cpus", "type": "int", "enum": ["1", "2"], "default": "1"},
        {"name": "debug", "type": "bool", "default": "false"},
        {"name": "ticket", "required": True},
    ]
    create(cluster, namespace, preset("params", claimParameters=declared))
    create(cluster, namespace, claim("cp", parameters=[{"name": "ticket", "value": "T-1"},
                                                       {"name": "empty"}]))  # fmt: skip
    create(cluster, namespace, workspace("wp", claimParameters=[{"name": "b", "value": "x"}]))
    stored = get_json(cluster, namespace, "preset/params")
    assert stored["spec"]["claimParameters"][0]["type"] == "string"
    assert stored["spec"]["claimParameters"][3]["required"] is True
    Preset.model_validate(stored)
    stored_claim = get_json(cluster, namespace, "workspaceclaim/cp")
    assert stored_claim["spec"]["parameters"][1] == {"name": "empty", "value": ""}
    WorkspaceClaim.model_validate(stored_claim)
    # Declaring claim parameters rolls nothing: the template hash is the plain preset's.
    plain = Preset.model_validate(preset("params"))
    assert template_hash(Preset.model_validate(stored).spec) == template_hash(plain.spec)


def test_at_least_fifteen_bad_manifests() -> None:
    assert len(BAD_CASES) >= 15
    assert len({c.id for c in BAD_CASES}) == len(BAD_CASES)


def test_samples_are_accepted(cluster: Cluster, namespace: str) -> None:
    result = cluster.kubectl("apply", "-n", namespace, "-f", str(SAMPLES))
    assert "preset.prewarm.dev/basic created" in result.stdout
    assert "preset.prewarm.dev/python-dev created" in result.stdout
    assert "workspaceclaim.prewarm.dev/alice-basic created" in result.stdout


def test_server_defaults_parse_and_keep_the_template_hash(cluster: Cluster, namespace: str) -> None:
    # The model reads what the server stores; defaulting must not change
    # the hash, or every pool would roll the first time the operator sees it.
    sample = yaml.safe_load((SAMPLES / "preset-basic.yaml").read_text())
    minimal = preset("minimal")
    del minimal["spec"]["prebuilds"]
    minimal["spec"]["parameters"] = [{"name": "ONLY_NAME"}]
    for manifest in (sample, minimal):
        create(cluster, namespace, manifest)
        stored = get_json(cluster, namespace, f"preset/{manifest['metadata']['name']}")
        assert template_hash(Preset.model_validate(stored).spec) == template_hash(
            Preset.model_validate(manifest).spec
        )
    stored_spec = get_json(cluster, namespace, "preset/minimal")["spec"]
    assert stored_spec["prebuilds"] == {"instances": 0, "timezone": "UTC"}
    assert stored_spec["parameters"] == [{"name": "ONLY_NAME", "value": ""}]


def test_workspace_owner_can_be_set_once(cluster: Cluster, namespace: str) -> None:
    create(cluster, namespace, workspace())
    stored = get_json(cluster, namespace, "prebuiltworkspace/w")
    assert stored["spec"]["owner"] == ""
    patch(
        cluster,
        namespace,
        merge(
            "prebuiltworkspace/w",
            {"spec": {"owner": "alice", "claimRef": {"name": "c", "uid": "u"}}},
        ),
    )
    # Re-writing the same owner is no change and is allowed.
    patch(cluster, namespace, merge("prebuiltworkspace/w", {"spec": {"owner": "alice"}}))
    assert get_json(cluster, namespace, "prebuiltworkspace/w")["spec"]["owner"] == "alice"


def test_status_is_a_subresource(cluster: Cluster, namespace: str) -> None:
    manifest = claim()
    manifest["status"] = {"phase": "Bound"}
    create(cluster, namespace, manifest)
    assert "status" not in get_json(cluster, namespace, "workspaceclaim/c")
    status = {
        "phase": "Bound",
        "source": "prebuilt",
        "workspaceName": "p-abcde",
        "boundAt": "2026-01-02T03:04:05Z",
        "conditions": [
            {
                "type": "Bound",
                "status": "True",
                "reason": "ClaimedPrebuilt",
                "message": "",
                "lastTransitionTime": "2026-01-02T03:04:05Z",
            }
        ],
    }
    patch(cluster, namespace, merge("workspaceclaim/c", {"status": status}, "status"))
    stored = WorkspaceClaim.model_validate(get_json(cluster, namespace, "workspaceclaim/c"))
    assert stored.status.workspace_name == "p-abcde"
    assert stored.status.conditions[0].reason == "ClaimedPrebuilt"


def test_kubectl_scale_sets_instances(cluster: Cluster, namespace: str) -> None:
    create(cluster, namespace, preset("x"))
    status = {"status": {"ready": 2, "selector": pool_selector("x")}}
    patch(cluster, namespace, merge("preset/x", status, "status"))
    cluster.kubectl("scale", "-n", namespace, "preset/x", "--replicas=5")
    stored = get_json(cluster, namespace, "preset/x")
    assert stored["spec"]["prebuilds"]["instances"] == 5
    scale = json.loads(
        cluster.kubectl(
            "get", "-n", namespace, "preset/x", "--subresource=scale", "-o", "json"
        ).stdout
    )
    assert scale["spec"]["replicas"] == 5
    assert scale["status"]["replicas"] == 2
    assert scale["status"]["selector"] == "prewarm.dev/preset=x"


def test_kubectl_scale_works_without_a_prebuilds_block(cluster: Cluster, namespace: str) -> None:
    manifest = preset("bare")
    del manifest["spec"]["prebuilds"]
    create(cluster, namespace, manifest)
    cluster.kubectl("scale", "-n", namespace, "preset/bare", "--replicas=3")
    assert get_json(cluster, namespace, "preset/bare")["spec"]["prebuilds"]["instances"] == 3


def test_category_lists_all_three_kinds(cluster: Cluster, namespace: str) -> None:
    create(cluster, namespace, preset())
    create(cluster, namespace, claim())
    create(cluster, namespace, workspace())
    out = cluster.kubectl("get", "prewarm", "-n", namespace).stdout
    for name in (
        "preset.prewarm.dev/p",
        "workspaceclaim.prewarm.dev/c",
        "prebuiltworkspace.prewarm.dev/w",
    ):
        assert name in out, out


def test_short_names(cluster: Cluster, namespace: str) -> None:
    for short in ("pset", "pws", "wsc"):
        cluster.kubectl("get", short, "-n", namespace)


def _header(cluster: Cluster, namespace: str, resource: str, *extra: str) -> list[str]:
    out = cluster.kubectl("get", resource, "-n", namespace, *extra).stdout
    return out.splitlines()[0].split()


def test_printer_columns(cluster: Cluster, namespace: str) -> None:
    create(cluster, namespace, preset())
    create(cluster, namespace, claim())
    create(cluster, namespace, workspace(owner="alice"))
    assert _header(cluster, namespace, "presets") == [
        "NAME", "DESIRED", "READY", "STARTING", "CLAIMED", "STATUS", "AGE"
    ]  # fmt: skip
    assert _header(cluster, namespace, "presets", "-o", "wide")[-2:] == ["INSTANCES", "TEMPLATE"]
    assert _header(cluster, namespace, "prebuiltworkspaces") == [
        "NAME", "PRESET", "PHASE", "OWNER", "POD", "AGE"
    ]  # fmt: skip
    assert _header(cluster, namespace, "workspaceclaims") == [
        "NAME", "PRESET", "OWNER", "PHASE", "WORKSPACE", "SOURCE", "EXPIRES", "AGE"
    ]  # fmt: skip
    assert "PARAMETERS" in _header(cluster, namespace, "workspaceclaims", "-o", "wide")
    row = cluster.kubectl("get", "pws", "w", "-n", namespace, "--no-headers").stdout.split()
    assert row[:3] == ["w", "p", "alice"]


def _explain(cluster: Cluster, path: str) -> str:
    # The API server publishes a new CRD's OpenAPI a few seconds after it is
    # Established; explain fails until then.
    deadline = time.monotonic() + 60
    while True:
        result = cluster.kubectl("explain", path, check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            assert result.returncode == 0, result.stderr
            return result.stdout
        time.sleep(1)


def test_explain_prebuilds_shows_descriptions(cluster: Cluster) -> None:
    out = _explain(cluster, "preset.spec.prebuilds")
    for fragment in ("instances", "schedules", "timezone", "ttl", "warm", "kubectl scale"):
        assert fragment in out, out


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("preset", "pool of prebuilt"),
        ("preset.spec.failurePolicy.hardLimit", "0 disables"),
        ("preset.status.prebuildStatus", "HardLimited"),
        ("prebuiltworkspace.spec.owner", "set exactly once"),
        ("workspaceclaim.spec.ownerSecretRef", "credentials"),
    ],
)
def test_explain_other_fields(cluster: Cluster, path: str, fragment: str) -> None:
    assert fragment in " ".join(_explain(cluster, path).split())
