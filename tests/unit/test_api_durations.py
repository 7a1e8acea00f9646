from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prewarm.api.durations import DURATION_PATTERN, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h30m0s", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("10us", timedelta(microseconds=10)),
        ("1500ns", timedelta(microseconds=2)),  # rounds up: never turns positive into zero
        ("1ns", timedelta(microseconds=1)),
        ("0s", timedelta(0)),
        ("72h", timedelta(days=3)),
        ("1m1m", timedelta(minutes=2)),  # Go sums repeated units too
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "5", "-5m", "+5m", "1d", "1 h", "h", ".5s", "1.s", "5M", "1h 30m", "1µs", "P1D"]
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_parse_rejects_overlong_text() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("1s" * 20)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=2), "48h"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(microseconds=1500), "1500us"),
        (timedelta(seconds=1, milliseconds=500), "1.5s"),
        (timedelta(hours=1, seconds=1), "1h1s"),
    ],
)
def test_format(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(timedelta(seconds=-1))


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650)))
def test_format_then_parse_round_trips(value: timedelta) -> None:
    text = format_duration(value)
    assert re.fullmatch(DURATION_PATTERN, text)
    assert parse_duration(text) == value
