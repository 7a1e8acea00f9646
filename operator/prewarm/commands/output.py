"""`-o json|yaml|wide` for every read command, and the default table.

A command builds its rows as plain dicts (the JSON form, camelCase keys) and
names the columns of its table; `-o wide` adds the columns marked wide.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from prewarm.commands.table import render_table

OUTPUTS = ("json", "yaml", "wide")
Row = dict[str, Any]


@dataclass(frozen=True)
class Column:
    header: str
    key: str
    wide: bool = False
    width: int = 0  # cut the cell to this many characters in the table (0: never)


@dataclass(frozen=True)
class Section:
    """One list of a command's answer: `key` in JSON/YAML, `title` above its table."""

    key: str
    rows: Sequence[Row]
    columns: Sequence[Column]
    title: str = ""


def _cell(value: Any, width: int) -> str:
    text = "" if value is None else str(value)
    if isinstance(value, bool):
        text = "yes" if value else ""
    return text[:width] if width else text


def render(sections: Sequence[Section], output: str | None) -> str:
    if output in ("json", "yaml"):
        document: Mapping[str, Any] = {s.key: list(s.rows) for s in sections}
        if output == "json":
            return json.dumps(document, indent=2, default=str)
        return yaml.safe_dump(json.loads(json.dumps(document, default=str)), sort_keys=False)
    tables = []
    for section in sections:
        columns = [c for c in section.columns if output == "wide" or not c.wide]
        table = render_table(
            [c.header for c in columns],
            [
                [_cell(row.get(c.key), 0 if output == "wide" else c.width) for c in columns]
                for row in section.rows
            ],
        )
        tables.append(f"{section.title}\n{table}" if section.title else table)
    return "\n\n".join(tables)
