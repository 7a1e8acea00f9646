"""The CLI as kubectl users expect it (issue 18): flags, namespaces, -o, exit codes,
one-line errors, no escape sequences, the kubectl plugin's name."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
import yaml

from prewarm import cli
from prewarm.commands.errors import Exit, classify
from prewarm.commands.output import Column, Section, render
from prewarm.commands.status import preset_row
from prewarm.k8s.client import ApiError, ClusterConfigError
from prewarm.ledger.repository import LedgerUnavailable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two contexts on an API server that is not there."""
    path = tmp_path / "config"
    server = f"https://127.0.0.1:{_closed_port()}"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "team-a", "context": {"cluster": "c", "user": "u", "namespace": "a"}},
                    {"name": "bare", "context": {"cluster": "c", "user": "u"}},
                ],
                "current-context": "team-a",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("PREWARM_DATABASE_URL", raising=False)
    return path


def test_issue18_every_cluster_command_takes_kubectls_flags() -> None:
    parser = cli.build_parser()
    for argv in (
        ["status"],
        ["history", "p"],
        ["reset", "p"],
        ["claim", "--preset", "p", "--owner", "o"],
    ):
        args = parser.parse_args([*argv, "--kubeconfig", "/k", "--context", "c", "-n", "ns"])
        assert (args.kubeconfig, args.context, args.namespace) == ("/k", "c", "ns")
    for read in (["status"], ["history", "p"]):
        for output in ("json", "yaml", "wide"):
            assert parser.parse_args([*read, "-o", output]).output == output
    assert parser.parse_args(["status", "-A"]).all_namespaces


def test_issue18_an_unknown_output_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["status", "-o", "xml"])
    assert exited.value.code == Exit.USAGE
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_issue18_namespace_defaults_to_the_contexts(kubeconfig: Path) -> None:
    parser = cli.build_parser()
    assert cli._namespace(parser.parse_args(["reset", "p"])) == "a"
    assert cli._namespace(parser.parse_args(["reset", "p", "--context", "bare"])) == "default"
    assert cli._namespace(parser.parse_args(["reset", "p", "-n", "x"])) == "x"
    elsewhere = parser.parse_args(["reset", "p", "--kubeconfig", str(kubeconfig.parent / "none")])
    assert cli._namespace(elsewhere) == "default"


@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        (
            ApiError(403, "Forbidden", 'presets is forbidden: User "bob"\ncannot list'),
            4,
            "forbidden (403)",
        ),
        (ApiError(401, "Unauthorized", "Unauthorized"), 4, "forbidden (401)"),
        (ApiError(404, "NotFound", 'namespaces "x" not found'), 5, "not found"),
        (ApiError(422, "Invalid", "bad name"), 6, "refused (422 Invalid)"),
        (ApiError(500, "InternalError", "etcd"), 6, "refused (500"),
        (ConnectionRefusedError(111, "Connect call failed"), 3, "cannot reach the API server"),
        (TimeoutError(), 3, "cannot reach the API server: TimeoutError"),
        (ClusterConfigError("Invalid kube-config file"), 2, "--kubeconfig, --context"),
        (LedgerUnavailable("connection refused"), 7, "kubectl exec deploy/prewarm"),
    ],
)
def test_issue18_each_failure_has_its_exit_code_and_one_line(
    error: BaseException, code: int, words: str
) -> None:
    known = classify(error)
    assert known is not None
    assert known.code == code
    assert words in str(known)
    assert "\n" not in str(known)


def test_issue18_exit_codes_are_stable() -> None:
    # Documented in docs/reference/settings.md: changing one breaks scripts.
    assert {e.name: int(e) for e in Exit} == {
        "OK": 0,
        "FAILED": 1,
        "USAGE": 2,
        "UNREACHABLE": 3,
        "FORBIDDEN": 4,
        "NOT_FOUND": 5,
        "REFUSED": 6,
        "LEDGER_UNREACHABLE": 7,
        "INTERRUPTED": 130,
        "TERMINATED": 143,
    }
    assert classify(ValueError("a bug")) is None  # a bug keeps its traceback


def test_issue18_unreachable_api_server_is_one_line_and_exit_3(
    kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["status"], ["reset", "p"], ["claim", "--preset", "p", "--owner", "o"]):
        assert cli.main(argv) == Exit.UNREACHABLE
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith(f"prewarm {argv[0]}: cannot reach the API server: ")


def test_issue18_an_unknown_context_is_one_line_and_exit_2(
    kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", "--context", "nope"]) == Exit.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no cluster to talk to" in err


def test_issue18_a_ledger_that_is_down_answers_at_once_with_exit_7(
    kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: the pool retried for 30 s, then a PoolTimeout traceback (exit 1).
    url = f"postgresql://prewarm@127.0.0.1:{_closed_port()}/prewarm"
    assert cli.main(["history", "p", "--database-url", url]) == Exit.LEDGER_UNREACHABLE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("prewarm history: the ledger (PostgreSQL) is unreachable: ")
    assert cli.main(["history", "p"]) == Exit.USAGE  # no URL at all
    assert "PREWARM_DATABASE_URL" in capsys.readouterr().err


def test_issue18_migrate_against_a_ledger_that_is_down_is_one_line_and_exit_7(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Before: psycopg.OperationalError escaped `prewarm migrate` as a traceback (exit 1).
    url = f"postgresql://prewarm@127.0.0.1:{_closed_port()}/prewarm"
    assert cli.main(["migrate", "--database-url", url]) == Exit.LEDGER_UNREACHABLE
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("prewarm migrate: the ledger (PostgreSQL) is unreachable: ")
    assert "Traceback" not in err


def test_issue18_migrations_that_disagree_are_one_line_and_exit_1() -> None:
    from prewarm.commands.errors import classify
    from prewarm.ledger.migrate import MigrationError

    known = classify(MigrationError("migration 0001_x.sql was changed\nafter it was applied"))
    assert known is not None
    assert known.code == Exit.FAILED
    assert str(known).startswith("the ledger's migrations disagree: migration 0001_x.sql")
    assert "\n" not in str(known)


ROWS = [
    {"namespace": "a", "name": "p", "ready": 3, "paused": True, "message": "x" * 100},
    {"namespace": "a", "name": "q", "ready": 0, "paused": False, "message": None},
]
COLUMNS = (
    Column("NAMESPACE", "namespace"),
    Column("PRESET", "name"),
    Column("READY", "ready"),
    Column("PAUSED", "paused"),
    Column("MESSAGE", "message", wide=True),
    Column("SHORT", "message", width=10),
)


def test_issue18_output_json_yaml_wide_and_the_table() -> None:
    sections = [Section("presets", ROWS, COLUMNS)]
    assert json.loads(render(sections, "json")) == {"presets": ROWS}
    assert yaml.safe_load(render(sections, "yaml")) == {"presets": ROWS}
    table = render(sections, None).splitlines()
    assert table[0].split() == ["NAMESPACE", "PRESET", "READY", "PAUSED", "SHORT"]
    assert table[1].split() == ["a", "p", "3", "yes", "x" * 10]
    wide = render(sections, "wide").splitlines()
    assert wide[0].split() == ["NAMESPACE", "PRESET", "READY", "PAUSED", "MESSAGE", "SHORT"]
    assert wide[1].split()[-1] == "x" * 100  # wide never cuts
    for text in (render(sections, o) for o in (None, "wide", "json", "yaml")):
        assert "\x1b" not in text  # no colours or other escape sequences, ever


def test_issue18_a_preset_row_is_its_json_form() -> None:
    row = preset_row(
        {
            "metadata": {"namespace": "a", "name": "p"},
            "status": {
                "desired": 3,
                "ready": 1,
                "summary": "HardLimited",
                "templateHash": "abc",
                "lastFailure": {"reason": "PodFailed", "message": "exit 1"},
            },
        }
    )
    assert row["status"] == "HardLimited"
    assert (row["lastFailure"], row["lastFailureMessage"]) == ("PodFailed", "exit 1")
    assert row["templateHash"] == "abc"
    assert row["paused"] is False


def test_issue18_the_kubectl_plugin_names_itself_kubectl_prewarm(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/kubectl-prewarm", "--help"])
    with pytest.raises(SystemExit):
        cli.kubectl_plugin()
    assert capsys.readouterr().out.startswith("usage: kubectl prewarm ")


def test_issue18_pyproject_ships_the_kubectl_plugin() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["kubectl-prewarm"] == "prewarm.cli:kubectl_plugin"
