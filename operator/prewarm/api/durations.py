"""Go-style duration strings (`90s`, `5m`, `1h30m`, `1.5h`) <-> timedelta.

The CRDs use the metav1.Duration string form because that is what
`kubectl explain` users know and what CEL's `duration()` parses. The grammar
here is the CRD's `pattern`: a subset of Go's `time.ParseDuration` without
signs and without the non-ASCII `µs` unit, so everything this module accepts
the API server accepts too, and the reverse.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"
DURATION_MAX_LENGTH: Final = 32

_WHOLE: Final = re.compile(DURATION_PATTERN)
_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)")
_NANOS_PER_UNIT: Final[dict[str, int]] = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`-style text. Raises ValueError on anything the CRD pattern rejects.

    Sub-microsecond remainders round up, so a duration the API server sees as
    positive (`1ns`) never becomes a zero timedelta here.
    """
    if len(text) > DURATION_MAX_LENGTH or not _WHOLE.fullmatch(text):
        raise ValueError(
            f"invalid duration {text!r}: expected Go duration syntax such as 90s, 5m or 1h30m"
        )
    nanos = sum(Decimal(number) * _NANOS_PER_UNIT[unit] for number, unit in _PART.findall(text))
    return timedelta(microseconds=math.ceil(nanos / 1000))


def format_duration(value: timedelta) -> str:
    """Compact Go-style text: `1h30m`, `90s` -> `1m30s`, `500ms`, `0s`. Inverse of parse."""
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if micros < 0:
        raise ValueError(f"negative duration {value!r} has no duration string")
    if micros == 0:
        return "0s"
    if micros < 1_000_000:
        return f"{micros // 1000}ms" if micros % 1000 == 0 else f"{micros}us"
    hours, rest = divmod(micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if seconds or fraction:
        text = f"{seconds}.{fraction:06d}".rstrip("0").rstrip(".") if fraction else f"{seconds}"
        parts.append(f"{text}s")
    return "".join(parts)


def _coerce_duration(value: Any) -> Any:
    # Only strings (the wire form) and timedeltas (code building models) are
    # accepted: pydantic's default would also take ints and ISO 8601, which
    # the CRD rejects.
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f"duration must be a string like 90s or 1h30m, not {type(value).__name__}")


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
"""A duration field: timedelta in Python, Go duration string on the wire."""


def _require_positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("duration must be greater than 0s")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_require_positive)]
"""A duration that must be > 0s (mirrors the CRD's CEL `duration(self) > duration('0s')`)."""
