"""The downward-API annotations file: `key="value"` lines, values quoted like Go's %q.

The kubelet writes the file with `fmt.Sprintf("%s=%q\\n", k, v)` (sorted keys)
and swaps it in atomically, and rewrites it only on its sync period. The parser
is nevertheless tolerant: a line that is not a complete `key="..."` pair (a
truncated write, garbage) is skipped instead of failing the whole file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prewarm.api.constants import (
    ANNOTATION_CLAIM_PARAMETERS,
    ANNOTATION_OWNER,
    ANNOTATION_REINIT_GENERATION,
)

_SIMPLE_ESCAPES = {
    "a": 0x07,
    "b": 0x08,
    "f": 0x0C,
    "n": 0x0A,
    "r": 0x0D,
    "t": 0x09,
    "v": 0x0B,
    "\\": 0x5C,
    "'": 0x27,
    '"': 0x22,
}
_HEX = frozenset("0123456789abcdefABCDEF")


class QuoteError(ValueError):
    pass


def unquote_go(quoted: str) -> str:
    """Inverse of Go's strconv.Quote: `"..."` with \\n, \\xNN, \\uNNNN, \\UNNNNNNNN, \\ooo."""
    if len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
        raise QuoteError("not a double-quoted string")
    body = quoted[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c == '"':
            raise QuoteError("unescaped quote")
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        if i + 1 >= len(body):
            raise QuoteError("dangling backslash")
        e = body[i + 1]
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
            i += 2
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width or not set(digits) <= _HEX:
                raise QuoteError(f"bad \\{e} escape")
            value = int(digits, 16)
            if e == "x":
                out.append(value)  # a raw byte: Go escapes invalid UTF-8 this way
            else:
                if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                    raise QuoteError("escape is not a valid code point")
                out += chr(value).encode("utf-8")
            i += 2 + width
        elif e in "01234567":
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or not set(digits) <= set("01234567") or int(digits, 8) > 255:
                raise QuoteError("bad octal escape")
            out.append(int(digits, 8))
            i += 4
        else:
            raise QuoteError(f"unknown escape \\{e}")
    return out.decode("utf-8", errors="replace")


def parse_annotations(text: str) -> dict[str, str]:
    """Every well-formed line of the file; malformed or partial lines are skipped."""
    result: dict[str, str] = {}
    for line in text.split("\n"):
        key, sep, value = line.partition("=")
        if not sep or not key or not value.startswith('"'):
            continue
        try:
            result[key] = unquote_go(value.rstrip("\r"))
        except QuoteError:
            continue
    return result


def read_annotations(path: Path) -> dict[str, str] | None:
    """The annotations, or None when the file does not exist (yet) or cannot be read."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError):
        return None
    return parse_annotations(raw.decode("utf-8", errors="replace"))


@dataclass(frozen=True)
class Claimed:
    """What the pod's annotations say the agent should be initialised for."""

    generation: int
    owner: str
    parameters: str = ""  # the claim's parameters as the operator wrote them (JSON), or ""


def parse_generation(value: str | None) -> int | None:
    """A non-negative decimal integer; None if absent or invalid."""
    if value is None:
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        return None
    return int(text)


def claimed_from(annotations: Mapping[str, str] | None) -> Claimed | None:
    """The (generation, owner) in a pod's annotations; None when it carries no valid one."""
    if annotations is None:
        return None
    generation = parse_generation(annotations.get(ANNOTATION_REINIT_GENERATION))
    if generation is None:
        return None
    return Claimed(
        generation,
        annotations.get(ANNOTATION_OWNER, ""),
        annotations.get(ANNOTATION_CLAIM_PARAMETERS, ""),
    )
