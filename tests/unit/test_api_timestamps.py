from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prewarm.api.timestamps import micro_time, parse_time, rfc3339

MICRO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2006-01-02T15:04:05Z", datetime(2006, 1, 2, 15, 4, 5, tzinfo=UTC)),
        ("2006-01-02T15:04:05+00:00", datetime(2006, 1, 2, 15, 4, 5, tzinfo=UTC)),
        ("2006-01-02T15:04:05.123Z", datetime(2006, 1, 2, 15, 4, 5, 123000, tzinfo=UTC)),
        ("2006-01-02T15:04:05.000007Z", datetime(2006, 1, 2, 15, 4, 5, 7, tzinfo=UTC)),
        ("2006-01-02T15:04:05.000007+00:00", datetime(2006, 1, 2, 15, 4, 5, 7, tzinfo=UTC)),
        ("2006-01-02T17:04:05+02:00", datetime(2006, 1, 2, 15, 4, 5, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() is not None


@pytest.mark.parametrize("value", [None, "", 0, 1136214245])
def test_parse_time_absent(value: object) -> None:
    assert parse_time(value) is None


def test_micro_time_has_six_fractional_digits() -> None:
    assert micro_time(datetime(2006, 1, 2, 15, 4, 5, tzinfo=UTC)) == "2006-01-02T15:04:05.000000Z"
    assert micro_time(datetime(2006, 1, 2, 15, 4, 5, 7, tzinfo=UTC)) == (
        "2006-01-02T15:04:05.000007Z"
    )
    # Converted to UTC from any offset.
    east = timezone(timedelta(hours=2))
    assert micro_time(datetime(2006, 1, 2, 17, 4, 5, 120000, tzinfo=east)) == (
        "2006-01-02T15:04:05.120000Z"
    )


def test_rfc3339() -> None:
    moment = datetime(2006, 1, 2, 15, 4, 5, 123456, tzinfo=UTC)
    assert rfc3339(moment) == "2006-01-02T15:04:05.123456Z"
    assert rfc3339(moment, milliseconds=True) == "2006-01-02T15:04:05.123Z"
    assert rfc3339(moment.replace(microsecond=0)) == "2006-01-02T15:04:05Z"


@given(MOMENTS)
def test_micro_time_round_trips(moment: datetime) -> None:
    text = micro_time(moment)
    assert MICRO_TIME.match(text)
    assert parse_time(text) == moment
    assert micro_time(moment) == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@given(MOMENTS)
def test_rfc3339_round_trips(moment: datetime) -> None:
    assert parse_time(rfc3339(moment)) == moment
    assert parse_time(rfc3339(moment, milliseconds=True)) == moment.replace(
        microsecond=moment.microsecond // 1000 * 1000
    )
