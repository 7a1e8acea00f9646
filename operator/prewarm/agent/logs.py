"""Structured logs: one JSON object per line on stderr.

Callers pass only non-secret fields; credential values never reach a log call
(hook output is redacted before it is logged, see hook.Redactor).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO


class JsonLog:
    def __init__(self, stream: TextIO | None = None, **context: Any) -> None:
        self._stream = stream
        self._context = context

    def __call__(self, level: str, event: str, **fields: Any) -> None:
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": level,
            "event": event,
            **self._context,
            **fields,
        }
        stream = self._stream or sys.stderr
        stream.write(json.dumps(record, default=str, sort_keys=False) + "\n")
        stream.flush()

    def info(self, event: str, **fields: Any) -> None:
        self("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self("error", event, **fields)
