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
    return _utc(value, "milliseconds" if milliseconds else "auto")


def micro_time(value: datetime) -> str:
    """A metav1.MicroTime (e.g. Lease.spec.renewTime): UTC, always six fractional digits."""
    return _utc(value, "microseconds")


def _utc(value: datetime, timespec: str) -> str:
    return value.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
