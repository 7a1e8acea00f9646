"""The pydantic models and the CRD schemas describe the same fields.

`schema_drift` walks a CRD schema node and a model annotation side by side
(fields by their camelCase alias) and names every path where a field exists
on one side only, the JSON types differ, or the enum values differ. Leaves
the CRD keeps opaque (x-kubernetes-preserve-unknown-fields without
properties) must be opaque in the model too (dict / Any).
"""

from __future__ import annotations

import copy
import types
import typing
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import pytest
import yaml
from pydantic import AwareDatetime, BaseModel

from prewarm.api import PrebuildStatus, PrebuiltWorkspace, Preset, WorkspaceClaim
from prewarm.api.preset import Prebuilds

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
MODELS: dict[str, tuple[str, type[BaseModel]]] = {
    "Preset": ("prewarm.dev_presets.yaml", Preset),
    "PrebuiltWorkspace": ("prewarm.dev_prebuiltworkspaces.yaml", PrebuiltWorkspace),
    "WorkspaceClaim": ("prewarm.dev_workspaceclaims.yaml", WorkspaceClaim),
}


def root_schema(file_name: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRD_DIR / file_name).read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _strip(annotation: Any) -> Any:
    """Drop Annotated metadata and `| None`: optionality is not drift."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _json_type(annotation: Any) -> str | None:
    """The OpenAPI type a model annotation serialises to; None means any/opaque."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return None
    if origin is list:
        return "array"
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "object"
    if origin is Literal or annotation is AwareDatetime:
        return "string"
    if isinstance(annotation, type):
        for python_type, json_type in (
            (bool, "boolean"),  # before int: bool is an int subclass
            (int, "integer"),
            (float, "number"),
            (str, "string"),  # StrEnum included
            (datetime, "string"),
            (timedelta, "string"),  # Duration serialises to a Go duration string
        ):
            if issubclass(annotation, python_type):
                return json_type
    raise TypeError(f"no JSON type known for {annotation!r}")


def _enum_values(annotation: Any) -> set[str] | None:
    if typing.get_origin(annotation) is Literal:
        return {str(a) for a in typing.get_args(annotation)}
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return {str(m.value) for m in annotation}
    return None


def _int_or_string(annotation: Any) -> bool:
    members = {_strip(a) for a in typing.get_args(annotation)}
    return typing.get_origin(annotation) in (Union, types.UnionType) and members == {int, str}


def schema_drift(schema: dict[str, Any], annotation: Any, path: str) -> list[str]:
    annotation = _strip(annotation)
    if _int_or_string(annotation) or schema.get("x-kubernetes-int-or-string"):
        if _int_or_string(annotation) and schema.get("x-kubernetes-int-or-string"):
            return []
        return [f"{path}: int-or-string in only one of the CRD and the model"]
    model_type = _json_type(annotation)
    opaque_in_crd = schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get(
        "properties"
    )
    if opaque_in_crd:
        opaque_in_model = annotation is Any or typing.get_origin(annotation) is dict
        if not opaque_in_model:
            return [f"{path}: opaque in the CRD but a typed {annotation!r} in the model"]
        return []
    if model_type is not None and schema.get("type") != model_type:
        return [f"{path}: type {schema.get('type')!r} in the CRD, {model_type!r} in the model"]

    drift: list[str] = []
    model_is_time = annotation is AwareDatetime or annotation is datetime
    if model_is_time != (schema.get("format") == "date-time"):
        drift.append(f"{path}: date-time in only one of the CRD and the model")
    crd_enum = set(map(str, schema["enum"])) if "enum" in schema else None
    model_enum = _enum_values(annotation)
    if crd_enum != model_enum:
        crd_values, model_values = sorted(crd_enum or []), sorted(model_enum or [])
        drift.append(f"{path}: enum {crd_values} in the CRD, {model_values} in the model")

    if model_type == "array":
        drift += schema_drift(schema["items"], typing.get_args(annotation)[0], f"{path}[]")
    elif typing.get_origin(annotation) is dict:
        values = schema.get("additionalProperties")
        if not isinstance(values, dict):
            drift.append(f"{path}: a map in the model, not in the CRD")
        else:
            drift += schema_drift(values, typing.get_args(annotation)[1], f"{path}{{}}")
    elif model_type == "object":
        drift += _object_drift(schema, annotation, path)
    return drift


def _object_drift(schema: dict[str, Any], model: type[BaseModel], path: str) -> list[str]:
    crd_fields = schema.get("properties", {})
    model_fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    drift = []
    if schema.get("x-kubernetes-preserve-unknown-fields") and model.model_config.get("extra") != (
        "allow"
    ):
        drift.append(f"{path}: the CRD keeps unknown fields, {model.__name__} drops them")
    drift += [
        f"{path}.{name}: in the CRD, missing from {model.__name__}"
        for name in crd_fields.keys() - model_fields.keys()
    ]
    drift += [
        f"{path}.{name}: in {model.__name__}, missing from the CRD"
        for name in model_fields.keys() - crd_fields.keys()
    ]
    for name in sorted(crd_fields.keys() & model_fields.keys()):
        drift += schema_drift(crd_fields[name], model_fields[name].annotation, f"{path}.{name}")
    return sorted(drift)


def resource_drift(schema: dict[str, Any], model: type[BaseModel]) -> list[str]:
    """Drift of spec and status (metadata, apiVersion and kind are Kubernetes' own)."""
    drift = []
    for part in ("spec", "status"):
        annotation = model.model_fields[part].annotation
        drift += schema_drift(schema["properties"][part], annotation, part)
    return drift


@pytest.mark.parametrize("kind", list(MODELS))
def test_model_matches_crd(kind: str) -> None:
    file_name, model = MODELS[kind]
    assert resource_drift(root_schema(file_name), model) == []


def test_checker_walks_deep() -> None:
    # Guard against a checker that passes because it looks at nothing: the
    # Preset schema has leaves several levels down that must be visited.
    file_name, model = MODELS["Preset"]
    schema = copy.deepcopy(root_schema(file_name))
    schema["properties"]["status"]["properties"]["conditions"]["items"]["properties"]["status"][
        "enum"
    ].append("Maybe")
    assert resource_drift(schema, model) == [
        "status.conditions[].status: enum ['False', 'Maybe', 'True', 'Unknown'] in the CRD, "
        "['False', 'True', 'Unknown'] in the model"
    ]


def test_detects_field_only_in_crd() -> None:
    file_name, model = MODELS["Preset"]
    schema = copy.deepcopy(root_schema(file_name))
    prebuilds = schema["properties"]["spec"]["properties"]["prebuilds"]["properties"]
    prebuilds["minReady"] = {"type": "integer", "description": "injected"}
    assert resource_drift(schema, model) == [
        "spec.prebuilds.minReady: in the CRD, missing from Prebuilds"
    ]


def test_detects_field_only_in_model() -> None:
    class PrebuildsPlus(Prebuilds):
        max_surge: int = 1

    class PresetSpecPlus(Preset.model_fields["spec"].annotation):  # type: ignore[misc]
        prebuilds: PrebuildsPlus

    class PresetPlus(Preset):
        spec: PresetSpecPlus

    file_name, _ = MODELS["Preset"]
    assert resource_drift(root_schema(file_name), PresetPlus) == [
        "spec.prebuilds.maxSurge: in PrebuildsPlus, missing from the CRD"
    ]


def test_detects_enum_drift() -> None:
    file_name, model = MODELS["Preset"]
    schema = copy.deepcopy(root_schema(file_name))
    status = schema["properties"]["status"]["properties"]
    status["prebuildStatus"]["enum"] = [s.value for s in PrebuildStatus if s.value != "Normal"]
    assert resource_drift(schema, model) == [
        "status.prebuildStatus: enum ['HardLimited', 'ValidationFailed'] in the CRD, "
        "['HardLimited', 'Normal', 'ValidationFailed'] in the model"
    ]


def test_detects_model_dropping_fields_the_crd_keeps() -> None:
    file_name, model = MODELS["Preset"]
    schema = copy.deepcopy(root_schema(file_name))
    template = schema["properties"]["spec"]["properties"]["template"]
    template["x-kubernetes-preserve-unknown-fields"] = True
    assert resource_drift(schema, model) == [
        "spec.template: the CRD keeps unknown fields, PodTemplate drops them"
    ]


def test_detects_type_drift() -> None:
    file_name, model = MODELS["WorkspaceClaim"]
    schema = copy.deepcopy(root_schema(file_name))
    schema["properties"]["status"]["properties"]["reinitGeneration"]["type"] = "string"
    assert resource_drift(schema, model) == [
        "status.reinitGeneration: type 'string' in the CRD, 'integer' in the model"
    ]


def test_detects_opaque_crd_field_typed_in_model() -> None:
    file_name, model = MODELS["Preset"]
    schema = copy.deepcopy(root_schema(file_name))
    template = schema["properties"]["spec"]["properties"]["template"]["properties"]
    template["metadata"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    drift = resource_drift(schema, model)
    assert len(drift) == 1
    assert drift[0].startswith("spec.template.metadata: opaque in the CRD")
