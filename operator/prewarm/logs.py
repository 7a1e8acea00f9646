"""One log shape for the operator and the agent: a JSON object per line.

    {"ts": "2026-12-01T10:00:00.123+00:00", "level": "info", "logger": "prewarm.claims",
     "message": "claim team-a/x bound to ...", "namespace": "team-a", "claim": "x", ...}

`ts`, `level`, `logger` and `message` come first in every record; then the
fields of the object it is about (`namespace`, `preset`, `claim`,
`workspace`), then any other fields. The operator's records get their object
fields from `log_context()` (set around each preset and claim pass) or from a
call's `extra=`; the agent's `JsonLog` passes them explicitly. Standard
library only: every layer may use it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

# The fields that name what a record is about, in the order they are written.
OBJECT_FIELDS = ("namespace", "preset", "claim", "workspace")

_context: ContextVar[Mapping[str, str]] = ContextVar(
    "prewarm_log_context", default=MappingProxyType({})
)

# Attributes every LogRecord has (and kopf's own): not fields of the record.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "k8s_skip",
    "k8s_ref",
    "settings",
}
# kopf names the object a record is about (k8s_ref); our field for each kind.
_KIND_FIELD = {"Preset": "preset", "WorkspaceClaim": "claim", "PrebuiltWorkspace": "workspace"}


def record(
    level: str, logger: str, message: str, fields: Mapping[str, Any], ts: datetime | None = None
) -> dict[str, Any]:
    """The one shape: envelope first, then object fields, then the rest."""
    out: dict[str, Any] = {
        "ts": (ts or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        "level": level,
        "logger": logger,
        "message": message,
    }
    for name in OBJECT_FIELDS:
        if fields.get(name) not in (None, ""):
            out[name] = fields[name]
    for name, value in fields.items():
        if name not in out and name not in OBJECT_FIELDS:
            out[name] = value
    return out


def dumps(rec: Mapping[str, Any]) -> str:
    return json.dumps(rec, default=str, ensure_ascii=False)


@contextlib.contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Every record logged inside (this task and the tasks it starts) carries `fields`."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def _level(levelno: int) -> str:
    if levelno <= logging.DEBUG:
        return "debug"
    if levelno <= logging.INFO:
        return "info"
    if levelno <= logging.WARNING:
        return "warning"
    return "error" if levelno <= logging.ERROR else "critical"


class JsonFormatter(logging.Formatter):
    """`record()` for the standard library's records (the operator's and kopf's)."""

    def format(self, rec: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(_context.get())
        ref = getattr(rec, "k8s_ref", None)
        if isinstance(ref, Mapping):
            if ref.get("namespace"):
                fields["namespace"] = ref["namespace"]
            kind_field = _KIND_FIELD.get(str(ref.get("kind")))
            if kind_field:
                fields[kind_field] = ref.get("name")
            else:
                fields["object"] = {k: ref.get(k) for k in ("kind", "name") if ref.get(k)}
        fields.update({k: v for k, v in vars(rec).items() if k not in _RESERVED})
        if rec.exc_info:
            fields["exc"] = self.formatException(rec.exc_info)
        ts = datetime.fromtimestamp(rec.created, UTC)
        return dumps(record(_level(rec.levelno), rec.name, rec.getMessage(), fields, ts))


def use_json(logger: logging.Logger | None = None) -> None:
    """Format every handler of `logger` (default: the root logger) as JSON."""
    for handler in (logger or logging.getLogger()).handlers:
        handler.setFormatter(JsonFormatter())
