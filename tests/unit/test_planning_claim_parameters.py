"""Per-claim parameters: what a preset declares, and whether a claim's values fit (issue 16)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from prewarm.api.claim_parameters import ClaimParameter, value_problem
from prewarm.api.preset import Parameter, PresetSpec
from prewarm.planning.claim_parameters import ResolvedParameters, resolve_parameters

DECLARED = [
    ClaimParameter(name="branch", pattern=r"[a-z][a-z0-9/_-]*", default="main"),
    ClaimParameter(name="cpus", type="int", enum=["1", "2", "4"]),
    ClaimParameter(name="debug", type="bool", default="false"),
    ClaimParameter(name="ticket", required=True),
]


def given(**values: str) -> list[Parameter]:
    return [Parameter(name=k, value=v) for k, v in values.items()]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # Defaults fill in; an optional parameter without a default stays absent.
        (
            {"ticket": "T-1"},
            (("branch", "main"), ("debug", "false"), ("ticket", "T-1")),
        ),
        (
            {"ticket": "T-1", "branch": "feature/x", "cpus": "4", "debug": "true"},
            (("branch", "feature/x"), ("cpus", "4"), ("debug", "true"), ("ticket", "T-1")),
        ),
        # Any string is a string; an empty value is a value.
        ({"ticket": ""}, (("branch", "main"), ("debug", "false"), ("ticket", ""))),
    ],
)
def test_fitting_values_resolve_with_defaults(
    values: dict[str, str], expected: tuple[tuple[str, str], ...]
) -> None:
    resolved = resolve_parameters(DECLARED, given(**values))
    assert resolved == ResolvedParameters(values=expected)
    assert resolved.problem is None


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (
            {"ticket": "T", "colour": "red"},
            "spec.parameters[colour]: the preset declares no such claim parameter "
            "(branch, cpus, debug, ticket)",
        ),
        ({"ticket": "T", "cpus": "3"}, "spec.parameters[cpus]: '3' is not one of '1', '2', '4'"),
        (
            {"ticket": "T", "cpus": "two"},
            "spec.parameters[cpus]: 'two' is not an int (a decimal of at most 18 digits)",
        ),
        (
            {"ticket": "T", "debug": "yes"},
            "spec.parameters[debug]: 'yes' is not a bool (true or false)",
        ),
        (
            {"ticket": "T", "branch": "Main Branch"},
            "spec.parameters[branch]: 'Main Branch' does not match the pattern '[a-z][a-z0-9/_-]*'",
        ),
        ({}, "spec.parameters[ticket]: required by the preset, but not set"),
    ],
)
def test_a_value_that_does_not_fit_is_named(values: dict[str, str], problem: str) -> None:
    resolved = resolve_parameters(DECLARED, given(**values))
    assert resolved.problem == problem
    assert resolved.values == ()  # nothing reaches a workspace


def test_every_problem_is_named_at_once() -> None:
    resolved = resolve_parameters(DECLARED, given(cpus="8", debug="1"))
    assert [p.split(":")[0] for p in resolved.problems] == [
        "spec.parameters[cpus]",
        "spec.parameters[debug]",
        "spec.parameters[ticket]",
    ]


def test_a_preset_without_declarations_accepts_no_parameters() -> None:
    assert resolve_parameters([], []) == ResolvedParameters()
    assert resolve_parameters([], given(x="1")).problem == (
        "spec.parameters[x]: the preset declares no such claim parameter (none)"
    )


def test_an_invalid_value_does_not_get_the_default() -> None:
    resolved = resolve_parameters(DECLARED, given(ticket="T", branch="BAD"))
    assert "branch" not in dict(resolved.values)
    assert resolved.problem is not None


def test_a_pattern_must_match_the_whole_value() -> None:
    declared = ClaimParameter(name="v", pattern="[0-9]+")
    assert value_problem(declared, "123") is None
    assert value_problem(declared, "123abc") is not None


def _preset(*claim_parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "template": {"spec": {"containers": [{"name": "c"}]}},
        "claimParameters": list(claim_parameters),
    }


@pytest.mark.parametrize(
    ("declaration", "error"),
    [
        ({"name": "n", "type": "int", "pattern": "[0-9]+"}, "pattern needs type string"),
        ({"name": "n", "pattern": "("}, "is not a regular expression"),
        ({"name": "n", "enum": ["a"], "pattern": "a"}, "enum and pattern exclude each other"),
        ({"name": "n", "required": True, "default": "a"}, "a required parameter has no default"),
        ({"name": "n", "type": "int", "enum": ["1", "x"]}, "'x' is not an int"),
        ({"name": "n", "type": "bool", "default": "yes"}, "'yes' is not a bool"),
        ({"name": "n", "enum": ["a", "b"], "default": "c"}, "'c' is not one of 'a', 'b'"),
        ({"name": "n", "pattern": "[a-z]+", "default": "A"}, "does not match the pattern"),
        ({"name": "1n"}, "name"),
    ],
)
def test_a_preset_whose_declarations_contradict_themselves_does_not_parse(
    declaration: dict[str, Any], error: str
) -> None:
    with pytest.raises(ValidationError, match=error.replace("(", r"\(")):
        PresetSpec.model_validate(_preset(declaration))


def test_declared_names_are_unique() -> None:
    with pytest.raises(ValidationError, match="duplicate parameter name 'n'"):
        PresetSpec.model_validate(_preset({"name": "n"}, {"name": "n", "type": "int"}))


def test_declarations_parse_with_their_defaults() -> None:
    spec = PresetSpec.model_validate(_preset({"name": "n"}))
    (declared,) = spec.claim_parameters
    assert (declared.type, declared.required, declared.enum, declared.default) == (
        "string",
        False,
        None,
        None,
    )
