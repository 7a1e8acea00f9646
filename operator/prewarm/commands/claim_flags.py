"""`prewarm claim`'s flags for the claim's spec: parsed and checked before any API call.

Each check is the CRD's own (the same duration grammar, the same bounds,
the same parameter-name pattern), so a flag the CLI accepts is one the API
server accepts too, and a mistake is reported as a usage error naming the
flag instead of as an API refusal. Whether a parameter fits its preset is
the operator's to say (the claim then fails with InvalidParameters).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prewarm.api.claim import OnWorkspaceLost
from prewarm.api.claim_parameters import PARAMETER_VALUE_MAX_LENGTH
from prewarm.api.durations import format_duration, parse_duration
from prewarm.api.patterns import PARAMETER_NAME_MAX_LENGTH, PARAMETER_NAME_PATTERN
from prewarm.api.timestamps import rfc3339

MAX_COLD_START_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class ClaimOptions:
    """What a claim may say beyond preset, owner and Secret (all optional)."""

    parameters: tuple[tuple[str, str], ...] = ()
    lifetime: str | None = None
    shutdown_at: str | None = None
    fresh: bool = False
    on_workspace_lost: str | None = None
    cold_start_grace: str | None = None

    def spec(self) -> dict[str, Any]:
        """The claim spec fields these options set (nothing for an unset flag)."""
        spec: dict[str, Any] = {}
        if self.parameters:
            spec["parameters"] = [{"name": k, "value": v} for k, v in self.parameters]
        if self.lifetime is not None:
            spec["lifetime"] = self.lifetime
        if self.shutdown_at is not None:
            spec["shutdownAt"] = self.shutdown_at
        if self.fresh:
            spec["fresh"] = True
        if self.on_workspace_lost is not None:
            spec["onWorkspaceLost"] = self.on_workspace_lost
        if self.cold_start_grace is not None:
            spec["coldStartGrace"] = self.cold_start_grace
        return spec


def parameter(text: str) -> tuple[str, str]:
    """`--param NAME=VALUE`: the value may be empty and may contain `=`."""
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    if len(name) > PARAMETER_NAME_MAX_LENGTH or not re.match(PARAMETER_NAME_PATTERN, name):
        raise argparse.ArgumentTypeError(
            f"parameter name {name!r}: letters, digits and underscore, not starting with a digit, "
            f"at most {PARAMETER_NAME_MAX_LENGTH} characters"
        )
    if len(value) > PARAMETER_VALUE_MAX_LENGTH:
        raise argparse.ArgumentTypeError(
            f"parameter {name}: the value is longer than {PARAMETER_VALUE_MAX_LENGTH} characters"
        )
    return name, value


def unique_parameters(parameters: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The parameters in order; a name given twice is a mistake, not an override."""
    seen: set[str] = set()
    for name, _ in parameters:
        if name in seen:
            raise argparse.ArgumentTypeError(f"--param {name} is given more than once")
        seen.add(name)
    return tuple(parameters)


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def lifetime(text: str) -> str:
    """`--lifetime 8h`: a Go duration greater than 0s (spec.lifetime)."""
    if _duration(text) <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0s")
    return text


def cold_start_grace(text: str) -> str:
    """`--cold-start-grace 30s`: a Go duration of at most 1h (spec.coldStartGrace)."""
    if _duration(text) > MAX_COLD_START_GRACE:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be at most {format_duration(MAX_COLD_START_GRACE)}"
        )
    return text


def shutdown_at(text: str) -> str:
    """`--shutdown-at TIME`: RFC 3339 with a zone (`2026-12-01T18:00:00Z`,
    `2026-12-01T19:00:00+01:00`); sent as UTC (spec.shutdownAt)."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an RFC 3339 time such as 2026-12-01T18:00:00Z"
        ) from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no time zone: add Z (UTC) or an offset such as +01:00"
        )
    return rfc3339(when)


def on_workspace_lost(text: str) -> str:
    """`--on-workspace-lost Rebind|Fail` (spec.onWorkspaceLost)."""
    if text not in tuple(OnWorkspaceLost):
        raise argparse.ArgumentTypeError(f"{text!r}: choose Rebind or Fail")
    return text


def add_claim_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of `prewarm claim` that set the claim's spec beyond preset and owner."""
    parser.add_argument(
        "--param",
        dest="params",
        metavar="NAME=VALUE",
        type=parameter,
        action="append",
        default=[],
        help="a claim parameter the preset declares (spec.claimParameters); repeatable",
    )
    parser.add_argument(
        "--lifetime", type=lifetime, help="the workspace goes this long after binding, e.g. 8h"
    )
    parser.add_argument(
        "--shutdown-at",
        type=shutdown_at,
        metavar="TIME",
        help="the workspace goes at this RFC 3339 time, e.g. 2026-12-01T18:00:00Z",
    )
    parser.add_argument("--fresh", action="store_true", help="always build (no warm workspace)")
    parser.add_argument(
        "--on-workspace-lost",
        type=on_workspace_lost,
        metavar="Rebind|Fail",
        help="what the claim does when its workspace is lost (default Rebind)",
    )
    parser.add_argument(
        "--cold-start-grace",
        type=cold_start_grace,
        metavar="DURATION",
        help="wait at most this long (<= 1h) for a starting warm workspace before building",
    )


def claim_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ClaimOptions:
    """The parsed flags as ClaimOptions; a repeated --param is a usage error (exit 2)."""
    try:
        parameters = unique_parameters(args.params)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    return ClaimOptions(
        parameters=parameters,
        lifetime=args.lifetime,
        shutdown_at=args.shutdown_at,
        fresh=args.fresh,
        on_workspace_lost=args.on_workspace_lost,
        cold_start_grace=args.cold_start_grace,
    )
