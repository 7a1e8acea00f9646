"""`prewarm claim` names its claim after the preset and the owner (issue 12, item 7)."""

from __future__ import annotations

import re

import pytest

from prewarm.commands.claim import claim_name

# A DNS-1123 label: what a claim name must be, and what a label value
# (prewarm.dev/claim on its workspace and pod) accepts as well.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize(
    ("preset", "owner", "expected"),
    [
        ("basic", "alice", "basic-alice-1a2b3c"),
        ("basic", "alice@example.com", "basic-alice-example-com-1a2b3c"),
        ("basic", "Alice Smith", "basic-alice-smith-1a2b3c"),
        ("my.preset_v2", "__bob__", "my-preset-v2-bob-1a2b3c"),
        ("basic", "Ærøskøbing ☃", "basic-r-sk-bing-1a2b3c"),
        ("basic", "李雷", "basic-1a2b3c"),
    ],
)
def test_item7_claim_name_of_any_owner_is_a_dns_label(
    preset: str, owner: str, expected: str
) -> None:
    name = claim_name(preset, owner, "1a2b3c")
    assert name == expected
    assert DNS_LABEL.match(name)


def test_item7_long_preset_and_owner_are_cut_to_63_characters() -> None:
    name = claim_name("p" * 253, "o" * 29 + "-" + "x" * 200, "1a2b3c")
    assert len(name) <= 63
    assert DNS_LABEL.match(name), name
    assert name.endswith("-1a2b3c")
