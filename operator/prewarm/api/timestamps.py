"""RFC 3339 timestamps as the API server writes and reads them."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(value: object) -> datetime | None:
    """A timestamp from an API object (`...Z` or with an offset); None if absent."""
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def rfc3339(value: datetime, milliseconds: bool = False) -> str:
    """UTC with a `Z`, as metav1 writes it (milliseconds where they matter)."""
    spec = "milliseconds" if milliseconds else "auto"
    return value.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")
