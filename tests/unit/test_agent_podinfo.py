"""The downward-API annotations file parser (Go %q values)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prewarm.agent.podinfo import (
    Claimed,
    QuoteError,
    claimed_from,
    parse_annotations,
    parse_generation,
    read_annotations,
    unquote_go,
)


@pytest.mark.parametrize(
    ("quoted", "expected"),
    [
        ('"plain"', "plain"),
        ('""', ""),
        ('"a\\"b"', 'a"b'),
        ('"back\\\\slash"', "back\\slash"),
        ('"line1\\nline2\\ttab\\r"', "line1\nline2\ttab\r"),
        ('"\\a\\b\\f\\v"', "\a\b\f\v"),
        ('"caf\\u00e9 \\U0001f600"', "caf\u00e9 \U0001f600"),
        ('"café 😀"', "café 😀"),  # Go keeps printable runes as they are
        ('"\\xc3\\xa9"', "é"),  # raw bytes that form UTF-8
        ('"\\303\\251"', "é"),  # octal bytes
        ('"{\\"k\\":\\"v\\"}"', '{"k":"v"}'),
    ],
)
def test_unquote_go(quoted: str, expected: str) -> None:
    assert unquote_go(quoted) == expected


@pytest.mark.parametrize(
    "bad", ['"unterminated', "noquotes", '"bad\\q"', '"a"b"', '"trailing\\"', '"\\x4"', '"\\ud800"']
)
def test_unquote_go_rejects_malformed(bad: str) -> None:
    with pytest.raises(QuoteError):
        unquote_go(bad)


def test_parse_file_with_escapes_and_sorted_keys() -> None:
    text = (
        'kubectl.kubernetes.io/last-applied-configuration="{\\"a\\":1}\\n"\n'
        'prewarm.dev/owner="alice \\"the admin\\""\n'
        'prewarm.dev/reinit-generation="7"\n'
    )
    assert parse_annotations(text) == {
        "kubectl.kubernetes.io/last-applied-configuration": '{"a":1}\n',
        "prewarm.dev/owner": 'alice "the admin"',
        "prewarm.dev/reinit-generation": "7",
    }


def test_partial_write_skips_only_the_truncated_line() -> None:
    text = 'prewarm.dev/owner="alice"\nprewarm.dev/reinit-generation="1'
    assert parse_annotations(text) == {"prewarm.dev/owner": "alice"}


@pytest.mark.parametrize("garbage", ["", "\n\n", '="x"\n', "novalue\n", "k=unquoted\n"])
def test_garbage_yields_nothing(garbage: str) -> None:
    assert parse_annotations(garbage) == {}


def test_value_with_equals_sign_splits_at_the_first() -> None:
    assert parse_annotations('k="a=b"\n') == {"k": "a=b"}


def test_missing_file_is_none(tmp_path: Path) -> None:
    assert read_annotations(tmp_path / "nope") is None
    assert read_annotations(tmp_path / "nope" / "annotations") is None


def test_read_file(tmp_path: Path) -> None:
    path = tmp_path / "annotations"
    path.write_bytes(b'prewarm.dev/reinit-generation="2"\nprewarm.dev/owner="bob"\n')
    assert claimed_from(read_annotations(path)) == Claimed(2, "bob")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3), ("0", 0), (" 12 ", 12), (None, None), ("", None), ("-1", None), ("1.5", None),
     ("x", None), ("\u0663", None)],
)  # fmt: skip
def test_parse_generation(value: str | None, expected: int | None) -> None:
    assert parse_generation(value) == expected


def test_claimed_from() -> None:
    assert claimed_from(None) is None
    assert claimed_from({}) is None
    assert claimed_from({"prewarm.dev/reinit-generation": "bad"}) is None
    assert claimed_from({"prewarm.dev/reinit-generation": "0"}) == Claimed(0, "")
    assert claimed_from(
        {"prewarm.dev/reinit-generation": "4", "prewarm.dev/owner": "carol"}
    ) == Claimed(4, "carol")
    # Issue 16: the claim's parameters come with the generation they belong to.
    assert claimed_from(
        {
            "prewarm.dev/reinit-generation": "5",
            "prewarm.dev/owner": "dave",
            "prewarm.dev/claim-parameters": '{"branch": "main"}',
        }
    ) == Claimed(5, "dave", '{"branch": "main"}')
