"""The CRD manifests are well-formed, documented and agree with the Python constants.

These checks run without an API server; tests/e2e/test_crds.py checks the
same manifests against a real one (CEL rules, defaulting, printer columns).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from prewarm.api import constants
from prewarm.api.conditions import CONDITION_REASON_PATTERN, CONDITION_TYPE_PATTERN
from prewarm.api.durations import DURATION_PATTERN
from prewarm.api.patterns import (
    CRON_PATTERN,
    PARAMETER_NAME_PATTERN,
    TEMPLATE_HASH_PATTERN,
    TIMEZONE_PATTERN,
)

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
SAMPLE_DIR = CRD_DIR / "samples"

CRD_FILES = {
    constants.KIND_PRESET: "prewarm.dev_presets.yaml",
    constants.KIND_PREBUILT_WORKSPACE: "prewarm.dev_prebuiltworkspaces.yaml",
    constants.KIND_WORKSPACE_CLAIM: "prewarm.dev_workspaceclaims.yaml",
}
KNOWN_PATTERNS = {
    CRON_PATTERN,
    TIMEZONE_PATTERN,
    PARAMETER_NAME_PATTERN,
    TEMPLATE_HASH_PATTERN,
    DURATION_PATTERN,
    CONDITION_TYPE_PATTERN,
    CONDITION_REASON_PATTERN,
}


def load_crd(kind: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load((CRD_DIR / CRD_FILES[kind]).read_text())
    return crd


def root_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = load_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its dotted path ([] for array items, {} for map values)."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}" if path else name)
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def all_nodes() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for kind in CRD_FILES:
        for path, node in walk(root_schema(kind), ""):
            yield kind, path, node


@pytest.mark.parametrize("kind", list(CRD_FILES))
def test_crd_identity(kind: str) -> None:
    crd = load_crd(kind)
    plural = constants.PLURALS[kind]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{plural}.{constants.GROUP}"
    assert CRD_FILES[kind] == f"{constants.GROUP}_{plural}.yaml"
    spec = crd["spec"]
    assert spec["group"] == constants.GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["singular"] == kind.lower()
    assert spec["names"]["shortNames"] == [constants.SHORT_NAMES[kind]]
    assert spec["names"]["categories"] == [constants.CATEGORY]
    [version] = spec["versions"]
    assert version["name"] == constants.VERSION
    assert version["served"] is True
    assert version["storage"] is True
    assert "status" in version["subresources"]


def test_preset_scale_subresource_points_at_schema_fields() -> None:
    scale = load_crd(constants.KIND_PRESET)["spec"]["versions"][0]["subresources"]["scale"]
    assert scale == {
        "specReplicasPath": ".spec.prebuilds.instances",
        "statusReplicasPath": ".status.ready",
        "labelSelectorPath": ".status.selector",
    }
    paths = {p for p, _ in walk(root_schema(constants.KIND_PRESET), "")}
    for json_path in scale.values():
        assert json_path.lstrip(".") in paths


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        (constants.KIND_PRESET, ["Desired", "Ready", "Starting", "Claimed", "Status", "Age"]),
        (constants.KIND_PREBUILT_WORKSPACE, ["Preset", "Phase", "Owner", "Pod", "Age"]),
        (
            constants.KIND_WORKSPACE_CLAIM,
            ["Preset", "Owner", "Phase", "Workspace", "Source", "Expires", "Age"],
        ),
    ],
)
def test_printer_columns(kind: str, columns: list[str]) -> None:
    declared = load_crd(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
    default_columns = [c["name"] for c in declared if c.get("priority", 0) == 0]
    assert default_columns == columns
    paths = {p for p, _ in walk(root_schema(kind), "")}
    for column in declared:
        json_path = column["jsonPath"].lstrip(".")
        assert json_path.startswith("metadata.") or json_path in paths, column


def test_every_property_has_a_description() -> None:
    # metadata is the exception: the API server publishes ObjectMeta's own docs for it.
    missing = [
        f"{kind}: {path or '<root>'}"
        for kind, path, node in all_nodes()
        if path != "metadata" and not node.get("description", "").strip()
    ]
    assert missing == []


def test_schemas_are_structural() -> None:
    problems = []
    for kind, path, node in all_nodes():
        if node.get("x-kubernetes-int-or-string") and node.get("anyOf") != [
            {"type": "integer"},
            {"type": "string"},
        ]:
            # The API server's one allowed form: anything more in anyOf is not structural.
            problems.append(f"{kind}: {path} int-or-string needs anyOf [integer, string] only")
        if "type" not in node and not (
            node.get("x-kubernetes-preserve-unknown-fields")
            or node.get("x-kubernetes-int-or-string")
        ):
            problems.append(f"{kind}: {path} has no type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{kind}: {path} has properties and additionalProperties")
        for required in node.get("required", []):
            if required not in node.get("properties", {}):
                problems.append(f"{kind}: {path} requires undeclared {required}")
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            item = node["items"]
            for key in keys:
                if key not in item.get("required", []) and "default" not in item["properties"][key]:
                    problems.append(f"{kind}: {path} map key {key} must be required")
    assert problems == []


def test_every_cel_rule_has_a_message_naming_its_field() -> None:
    rules = [
        (kind, path, rule)
        for kind, path, node in all_nodes()
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) >= 12
    for kind, path, rule in rules:
        message = rule.get("message", "")
        field = path + rule.get("fieldPath", "")
        assert message.startswith(f"{field} "), (kind, path, rule)


def test_patterns_are_the_python_constants() -> None:
    # The models validate with these very strings, so the model never
    # rejects an object the API server accepted (and would then fail to parse).
    used = {node["pattern"] for _, _, node in all_nodes() if "pattern" in node}
    used |= {
        match
        for _, _, node in all_nodes()
        for rule in node.get("x-kubernetes-validations", [])
        for match in re.findall(r"matches\(r'([^']*)'\)", rule["rule"])
    }
    assert used <= KNOWN_PATTERNS
    assert {CRON_PATTERN, TIMEZONE_PATTERN, DURATION_PATTERN, PARAMETER_NAME_PATTERN} <= used


@pytest.mark.parametrize(
    "cron",
    ["*/5 * * * *", "0 9 * * MON-FRI", "* 8-18 * * 1-5", "30 8 1,15 * *", "0 0 * jan,Jul sun"],
)
def test_cron_pattern_accepts(cron: str) -> None:
    assert re.fullmatch(CRON_PATTERN, cron)


@pytest.mark.parametrize(
    "cron",
    ["61 * * * *", "* * * *", "0 0 * * * *", "@daily", "0 24 * * *", "0 0 0 * *", "every day"],
)
def test_cron_pattern_rejects(cron: str) -> None:
    assert not re.fullmatch(CRON_PATTERN, cron)


@pytest.mark.parametrize(
    ("zone", "ok"),
    [
        ("UTC", True),
        ("Europe/Berlin", True),
        ("America/Argentina/Buenos_Aires", True),
        ("Etc/GMT+5", True),
        ("Mars/Olympus Mons", False),
        ("Europe/Berlin/", False),
        ("/UTC", False),
        ("", False),
    ],
)
def test_timezone_pattern(zone: str, ok: bool) -> None:
    assert bool(re.fullmatch(TIMEZONE_PATTERN, zone)) is ok


# A small OpenAPI validator for the samples: enough of the keywords the CRDs
# use to catch a sample that drifted from its schema without an API server.
def schema_errors(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return []
    kind = schema.get("type")
    checks: dict[str, type | tuple[type, ...]] = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "integer": int,
    }
    if kind in checks and (
        not isinstance(value, checks[kind]) or (kind == "integer" and isinstance(value, bool))
    ):
        return [f"{path}: expected {kind}, got {value!r}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    for rule in schema.get("x-kubernetes-validations", []):
        for regex in re.findall(r"matches\(r'([^']*)'\)", rule["rule"]):
            if not re.search(regex, value):
                errors.append(f"{path}: {rule['message']}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: {value} < {schema['minimum']}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{path}: shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{path}: longer than {schema['maxLength']}")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: more than {schema['maxItems']} items")
    if kind == "object":
        properties = schema.get("properties", {})
        errors += [f"{path}.{r}: required" for r in schema.get("required", []) if r not in value]
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(item, schema["additionalProperties"], f"{path}.{key}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields") and path:
                errors.append(f"{path}.{key}: unknown field")
    if kind == "array":
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{index}]")
        if schema.get("x-kubernetes-list-type") == "map":
            keys = [tuple(i.get(k) for k in schema["x-kubernetes-list-map-keys"]) for i in value]
            if len(keys) != len(set(keys)):
                errors.append(f"{path}: duplicate map keys")
    return errors


def sample_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}#{index}", doc)
        for path in sorted(SAMPLE_DIR.glob("*.yaml"))
        for index, doc in enumerate(yaml.safe_load_all(path.read_text()))
        if doc
    ]


def test_required_samples_exist() -> None:
    names = {p.name for p in SAMPLE_DIR.glob("*.yaml")}
    assert {"preset-basic.yaml", "preset-scheduled.yaml", "workspaceclaim.yaml"} <= names


@pytest.mark.parametrize(
    ("name", "doc"), sample_documents(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_sample_matches_its_crd_schema(name: str, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == constants.API_VERSION
    schema = root_schema(doc["kind"])
    metadata_free = {k: v for k, v in doc.items() if k != "metadata"}
    assert schema_errors(metadata_free, schema, "") == []


def test_schema_checker_catches_a_bad_sample() -> None:
    schema = root_schema(constants.KIND_PRESET)
    bad = {
        "spec": {
            "template": {"spec": {}},
            "prebuilds": {"instances": -1, "ttl": "1 hour", "schedules": [{"cron": "@daily"}]},
        }
    }
    errors = schema_errors(bad, schema, "")
    assert any(e.startswith(".spec.prebuilds.schedules[0].cron: spec.prebuilds") for e in errors)
    assert ".spec.prebuilds.schedules[0].instances: required" in errors
    assert any(e.startswith(".spec.prebuilds.instances") for e in errors)
    assert any(e.startswith(".spec.prebuilds.ttl") for e in errors)


def test_reference_doc_covers_every_field() -> None:
    doc = (REPO / "docs" / "reference" / "crds.md").read_text()
    missing = [
        f"{kind}: {path}"
        for kind, path, _ in all_nodes()
        if path.startswith(("spec.", "status."))
        and not path.endswith(("{}", "[]"))
        and f"`{path}`" not in doc
    ]
    assert missing == []
