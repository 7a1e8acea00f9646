"""Regular expressions shared by the CRD schemas and the models.

Each is written so Go's RE2 (the API server) and Python's `re` read it the
same way; a unit test checks the CRD YAML carries exactly these strings, so
the model never rejects an object the API server accepted.
"""

from __future__ import annotations

from typing import Final

_MONTH_NAMES: Final = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC"
_DAY_NAMES: Final = "SUN|MON|TUE|WED|THU|FRI|SAT"

# One numeric alternative per cron field, bounded to the field's range so
# `61 * * * *` is rejected at admission instead of by the operator later.
_CRON_FIELD_VALUES: Final = (
    r"[0-5]?[0-9]",  # minute 0-59
    r"([01]?[0-9]|2[0-3])",  # hour 0-23
    r"(0?[1-9]|[12][0-9]|3[01])",  # day of month 1-31
    rf"(0?[1-9]|1[0-2]|(?i:{_MONTH_NAMES}))",  # month 1-12 or JAN-DEC
    rf"([0-7]|(?i:{_DAY_NAMES}))",  # day of week 0-7 (0 and 7 are Sunday) or SUN-SAT
)


def _cron_item(value: str) -> str:
    return rf"(\*|{value}(-{value})?)(/[0-9]{{1,2}})?"


def _cron_field(value: str) -> str:
    return rf"{_cron_item(value)}(,{_cron_item(value)})*"


CRON_PATTERN: Final = "^" + " +".join(_cron_field(v) for v in _CRON_FIELD_VALUES) + "$"
"""Five-field cron: `*`, values, ranges, steps and lists; no macros, no seconds field."""
CRON_MAX_LENGTH: Final = 128

TIMEZONE_PATTERN: Final = r"^(UTC|[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2})$"
"""IANA-like zone name (`UTC`, `Europe/Berlin`, `America/Argentina/Buenos_Aires`).

Only the shape is checked at admission; whether the zone exists is decided
by the operator's tz database and reported in a condition.
"""
TIMEZONE_MAX_LENGTH: Final = 64

PARAMETER_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""A portable environment variable name, since parameters become env vars."""
PARAMETER_NAME_MAX_LENGTH: Final = 63

TEMPLATE_HASH_PATTERN: Final = r"^[0-9a-f]{6,64}$"
"""Any lowercase hex digest length, so a longer hash later needs no CRD change."""
