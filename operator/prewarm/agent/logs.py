"""Structured logs: one JSON object per line on stderr, in the operator's shape
(`prewarm.logs.record`: ts, level, logger, message, then the fields). The
event name is the message and also the field `event`.

Callers pass only non-secret fields; credential values never reach a log call
(hook output is redacted before it is logged, see hook.Redactor).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from prewarm.logs import dumps, record

LOGGER = "prewarm.agent"


class JsonLog:
    def __init__(self, stream: TextIO | None = None, **context: Any) -> None:
        self._stream = stream
        self._context = context

    def __call__(self, level: str, event: str, **fields: Any) -> None:
        rec = record(level, LOGGER, event, {"event": event, **self._context, **fields})
        stream = self._stream or sys.stderr
        stream.write(dumps(rec) + "\n")
        stream.flush()

    def info(self, event: str, **fields: Any) -> None:
        self("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self("error", event, **fields)
