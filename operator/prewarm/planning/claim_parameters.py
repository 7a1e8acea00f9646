"""A claim's parameters against its preset's declarations: pure.

The CRD checks what it can alone (names, lengths, unique names); what
depends on the Preset (is the name declared, does the value fit its type,
enum or pattern, is a required one missing) is decided here. The result is
what reaches the workspace: the claim's values with the preset's defaults
filled in, as strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prewarm.api.claim_parameters import ClaimParameter, value_problem
from prewarm.api.preset import Parameter


@dataclass(frozen=True)
class ResolvedParameters:
    values: tuple[tuple[str, str], ...] = ()  # name, value; sorted by name
    problems: tuple[str, ...] = ()  # each names its parameter: spec.parameters[NAME]: ...

    @property
    def problem(self) -> str | None:
        """All problems in one message, for a condition; None when the parameters fit."""
        return "; ".join(self.problems) if self.problems else None


def resolve_parameters(
    declared: Sequence[ClaimParameter], given: Sequence[Parameter]
) -> ResolvedParameters:
    """The values a claim's workspace gets, or why the claim's parameters do not fit."""
    by_name = {d.name: d for d in declared}
    problems: list[str] = []
    values: dict[str, str] = {}
    for parameter in given:
        where = f"spec.parameters[{parameter.name}]"
        declaration = by_name.get(parameter.name)
        if declaration is None:
            names = ", ".join(sorted(by_name)) or "none"
            problems.append(f"{where}: the preset declares no such claim parameter ({names})")
            continue
        problem = value_problem(declaration, parameter.value)
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        values[parameter.name] = parameter.value
    for declaration in declared:
        if declaration.name in values or declaration.name in {p.name for p in given}:
            continue
        if declaration.default is not None:
            values[declaration.name] = declaration.default
        elif declaration.required:
            problems.append(
                f"spec.parameters[{declaration.name}]: required by the preset, but not set"
            )
    if problems:
        return ResolvedParameters(problems=tuple(problems))
    return ResolvedParameters(values=tuple(sorted(values.items())))
