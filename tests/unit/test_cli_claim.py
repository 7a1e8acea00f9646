"""`prewarm claim` names its claim after the preset and the owner (issue 12, item 7)."""

from __future__ import annotations

import argparse
import re
from typing import Any

import pytest

from prewarm import cli
from prewarm.api.claim import WorkspaceClaim
from prewarm.commands.claim import claim_manifest, claim_name
from prewarm.commands.claim_flags import ClaimOptions, claim_options

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


# Issue 16: the claim's spec from flags, checked before any API call.


def _claim_args(*flags: str) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = cli.build_parser()
    return parser, parser.parse_args(["claim", "--preset", "p", "--owner", "alice", *flags])


def _spec(*flags: str) -> dict[str, Any]:
    _, args = _claim_args(*flags)
    options = claim_options(args.claim_parser, args)
    spec: dict[str, Any] = claim_manifest("c", "p", "alice", None, options)["spec"]
    return spec


def test_without_spec_flags_the_claim_is_as_before() -> None:
    assert _spec() == {"presetRef": {"name": "p"}, "owner": "alice"}


def test_every_spec_flag_reaches_the_claim() -> None:
    spec = _spec(
        "--param", "branch=feature/x",
        "--param", "EMPTY=",
        "--param", "query=a=b",
        "--lifetime", "8h",
        "--shutdown-at", "2026-12-01T19:00:00+01:00",
        "--fresh",
        "--on-workspace-lost", "Fail",
        "--cold-start-grace", "30s",
    )  # fmt: skip
    assert spec == {
        "presetRef": {"name": "p"},
        "owner": "alice",
        "parameters": [
            {"name": "branch", "value": "feature/x"},
            {"name": "EMPTY", "value": ""},
            {"name": "query", "value": "a=b"},  # only the first = separates
        ],
        "lifetime": "8h",
        "shutdownAt": "2026-12-01T18:00:00Z",  # sent as UTC
        "fresh": True,
        "onWorkspaceLost": "Fail",
        "coldStartGrace": "30s",
    }
    # The manifest the CLI sends parses as a claim.
    WorkspaceClaim.model_validate(claim_manifest("c", "p", "alice", None, _options(spec)))


def _options(spec: dict[str, Any]) -> ClaimOptions:
    return ClaimOptions(
        parameters=tuple((p["name"], p["value"]) for p in spec["parameters"]),
        lifetime=spec["lifetime"],
        shutdown_at=spec["shutdownAt"],
        fresh=spec["fresh"],
        on_workspace_lost=spec["onWorkspaceLost"],
        cold_start_grace=spec["coldStartGrace"],
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--param", "branch"), "is not NAME=VALUE"),
        (("--param", "1x=y"), "parameter name '1x'"),
        (("--param", "a-b=y"), "parameter name 'a-b'"),
        (("--param", "x=" + "v" * 4097), "longer than 4096"),
        (("--param", "a=1", "--param", "a=2"), "--param a is given more than once"),
        (("--lifetime", "0s"), "must be greater than 0s"),
        (("--lifetime", "1 day"), "invalid duration '1 day'"),
        (("--lifetime=-1h",), "invalid duration"),
        (("--cold-start-grace", "2h"), "must be at most 1h"),
        (("--cold-start-grace", "soon"), "invalid duration"),
        (("--shutdown-at", "tomorrow"), "not an RFC 3339 time"),
        (("--shutdown-at", "2026-12-01T18:00:00"), "has no time zone"),
        (("--on-workspace-lost", "rebind"), "choose Rebind or Fail"),
    ],
)
def test_a_bad_flag_is_a_usage_error_naming_it(
    flags: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _spec(*flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_zero_grace_and_the_default_policy_are_valid_values() -> None:
    spec = _spec("--cold-start-grace", "0s", "--on-workspace-lost", "Rebind")
    assert (spec["coldStartGrace"], spec["onWorkspaceLost"]) == ("0s", "Rebind")
