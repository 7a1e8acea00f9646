"""Claim parameters: what a Preset lets a claim set, and whether a value fits.

A Preset declares them (`spec.claimParameters`); a claim sets them
(`spec.parameters`, name/value pairs). The CRD checks shapes; whether a
value fits its declaration depends on the Preset, so the operator checks it
with `value_problem` (and the Preset's own defaults and enums with the same
function, when its spec is parsed). Values are strings on the wire and in
the agent's file; the type only says which strings are allowed.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Final, Self

from pydantic import Field, model_validator

from prewarm.api.base import ApiModel
from prewarm.api.patterns import PARAMETER_NAME_MAX_LENGTH, PARAMETER_NAME_PATTERN

INT_VALUE_PATTERN: Final = r"^-?[0-9]{1,18}$"
"""An int parameter's value: a decimal that fits in 64 bits."""
BOOL_VALUES: Final = ("true", "false")
PARAMETER_VALUE_MAX_LENGTH: Final = 4096
PARAMETER_PATTERN_MAX_LENGTH: Final = 1024
MAX_CLAIM_PARAMETERS: Final = 64


class ClaimParameterType(StrEnum):
    STRING = "string"
    INT = "int"
    BOOL = "bool"


ParameterValue = Annotated[str, Field(max_length=PARAMETER_VALUE_MAX_LENGTH)]


class ClaimParameter(ApiModel):
    """One parameter a claim of the preset may (or must) set."""

    name: str = Field(max_length=PARAMETER_NAME_MAX_LENGTH, pattern=PARAMETER_NAME_PATTERN)
    type: ClaimParameterType = ClaimParameterType.STRING
    enum: list[Annotated[str, Field(max_length=256)]] | None = Field(
        default=None, min_length=1, max_length=64
    )
    pattern: str | None = Field(default=None, max_length=PARAMETER_PATTERN_MAX_LENGTH)
    default: ParameterValue | None = None
    required: bool = False
    description: str = Field(default="", max_length=1024)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.pattern is not None:
            if self.type is not ClaimParameterType.STRING:
                raise ValueError(f"claimParameters[{self.name}]: pattern needs type string")
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(
                    f"claimParameters[{self.name}].pattern is not a regular expression: {error}"
                ) from None
        if self.enum is not None and self.pattern is not None:
            raise ValueError(f"claimParameters[{self.name}]: enum and pattern exclude each other")
        if self.required and self.default is not None:
            raise ValueError(f"claimParameters[{self.name}]: a required parameter has no default")
        for value in self.enum or []:
            problem = _type_problem(self.type, value)
            if problem:
                raise ValueError(f"claimParameters[{self.name}].enum: {problem}")
        if self.default is not None:
            problem = value_problem(self, self.default)
            if problem:
                raise ValueError(f"claimParameters[{self.name}].default: {problem}")
        return self


def _type_problem(kind: ClaimParameterType, value: str) -> str | None:
    if kind is ClaimParameterType.INT and not re.match(INT_VALUE_PATTERN, value):
        return f"{value!r} is not an int (a decimal of at most 18 digits)"
    if kind is ClaimParameterType.BOOL and value not in BOOL_VALUES:
        return f"{value!r} is not a bool (true or false)"
    return None


def value_problem(declared: ClaimParameter, value: str) -> str | None:
    """Why `value` does not fit the declaration; None when it does."""
    problem = _type_problem(declared.type, value)
    if problem:
        return problem
    if declared.enum is not None and value not in declared.enum:
        return f"{value!r} is not one of {', '.join(repr(v) for v in declared.enum)}"
    if declared.pattern is not None and re.fullmatch(declared.pattern, value) is None:
        return f"{value!r} does not match the pattern {declared.pattern!r}"
    return None
