"""The `prewarm` command: the composition root of every entry point."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from prewarm import __version__
from prewarm.commands.claim_flags import add_claim_flags
from prewarm.commands.output import OUTPUTS
from prewarm.settings import CliSettings

if TYPE_CHECKING:
    from prewarm.commands.connect import Target

Command = Callable[[argparse.Namespace], int]
T = TypeVar("T")


class CliProblem(RuntimeError):
    """A problem the person at the terminal must fix; printed without a traceback."""


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine: a refusal of the API server, an unreachable API
    server or ledger, a missing kubeconfig become one line and an exit code
    (commands.errors), not a traceback."""
    from prewarm.commands.errors import classify

    try:
        return asyncio.run(work)
    except Exception as error:
        known = classify(error)
        if known is None:
            raise
        raise known from None


def _cmd_migrate(args: argparse.Namespace) -> int:
    from prewarm.ledger.repository import apply_migrations
    from prewarm.settings import Settings

    dsn = args.database_url or Settings().database_url
    # PostgreSQL down is one line and exit 7 (commands.errors), within 3 s, not a traceback.
    applied = _run(apply_migrations(dsn))
    print(
        f"prewarm migrate: {len(applied)} migration(s) applied"
        if applied
        else "prewarm migrate: up to date"
    )
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from prewarm.run import run_operator

    return run_operator(verbose=args.verbose)


def _target(args: argparse.Namespace) -> Target:
    from prewarm.commands.connect import Target

    return Target(args.kubeconfig, args.context)


def _namespace(args: argparse.Namespace) -> str:
    """-n, else the context's namespace (kubectl's rule)."""
    return str(args.namespace or _target(args).namespace())


def _cmd_claim(args: argparse.Namespace) -> int:
    from prewarm.commands.claim import claim
    from prewarm.commands.claim_flags import claim_options

    options = claim_options(args.claim_parser, args)
    result = _run(
        claim(
            _target(args),
            _namespace(args),
            args.preset,
            args.owner,
            args.secret,
            args.wait,
            args.timeout,
            options,
        )
    )
    if not args.wait:
        print(f"workspaceclaim/{result.name} created in {result.seconds * 1000:.1f} ms")
        return 0
    reinit = " reinitialized" if result.reinit == "ReinitSucceeded" else ""
    print(
        f"workspaceclaim/{result.name} {result.phase}{reinit}: workspace "
        f"{result.workspace or '-'} ({result.source or '-'}) in {result.seconds * 1000:.1f} ms"
        + (f"; {result.message}" if not result.ok else "")
    )
    return 0 if result.ok else 1


def _cmd_status(args: argparse.Namespace) -> int:
    from prewarm.commands.output import render
    from prewarm.commands.status import status_sections

    namespace = None if args.all_namespaces else _namespace(args)
    database_url = _database_url(args, required=False)
    print(render(_run(status_sections(_target(args), namespace, database_url)), args.output))
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from prewarm.commands.output import render
    from prewarm.commands.status import history_section

    dsn = _database_url(args, required=True)
    assert dsn is not None
    section = _run(history_section(dsn, _namespace(args), args.preset, args.limit))
    print(render([section], args.output))
    return 0


def _cmd_reset(args: argparse.Namespace) -> int:
    from prewarm.commands.status import request_retry

    token = args.token or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    _run(request_retry(_target(args), _namespace(args), args.preset, token))
    print(f"preset/{args.preset}: prewarm.dev/retry={token} (failures so far no longer count)")
    return 0


def _database_url(args: argparse.Namespace, required: bool) -> str | None:
    url: str | None = args.database_url or CliSettings().database_url
    if required and not url:
        from prewarm.commands.errors import CliError, Exit

        raise CliError("set PREWARM_DATABASE_URL or --database-url to read the ledger", Exit.USAGE)
    return url


def _cmd_agent(_: argparse.Namespace) -> int:
    from prewarm.agent import run_agent

    return run_agent()


def _cmd_dev(args: argparse.Namespace) -> int:
    try:
        from prewarm.devenv.dev import run_dev, run_dev_real_node
        from prewarm.devenv.errors import EnvironmentProblem
    except ImportError:
        raise CliProblem(
            "`prewarm dev` is a developer command: the installed package does not ship the "
            "local control plane. Run `make dev` in a checkout of the repository."
        ) from None
    port = args.apiserver_port or CliSettings().dev_apiserver_port
    try:
        if args.real_node:
            return run_dev_real_node()
        return run_dev(apiserver_port=port, with_operator=not args.no_operator)
    except EnvironmentProblem as problem:
        raise CliProblem(str(problem)) from None


def _cluster_flags() -> argparse.ArgumentParser:
    """kubectl's flags, on every command that talks to the cluster."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--kubeconfig", default=None, help="kubeconfig file (else $KUBECONFIG)")
    flags.add_argument("--context", default=None, help="kubeconfig context (else the current)")
    flags.add_argument(
        "-n", "--namespace", default=None, help="namespace (default: the context's namespace)"
    )
    return flags


def _output_flag() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "-o", "--output", choices=OUTPUTS, default=None, help="json, yaml or wide (more columns)"
    )
    return flags


def _add_user_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The commands people run against a cluster: claim, status, history, reset."""
    cluster, output = _cluster_flags(), _output_flag()
    claim = sub.add_parser("claim", parents=[cluster], help="claim a workspace of a preset")
    claim.add_argument("--preset", required=True)
    claim.add_argument("--owner", required=True)
    claim.add_argument("--secret", default=None, help="Secret with the owner's credentials")
    claim.add_argument(
        "--wait",
        action="store_true",
        help="wait until Bound (and re-initialised, if the workspace has agents) or Failed",
    )
    claim.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")
    add_claim_flags(claim)
    claim.set_defaults(func=_cmd_claim, claim_parser=claim)

    status = sub.add_parser(
        "status", parents=[cluster, output], help="presets, pools, hard-limit state, recent claims"
    )
    status.add_argument(
        "-A", "--all-namespaces", action="store_true", help="presets of every namespace"
    )
    status.add_argument("--database-url", default=None)
    status.set_defaults(func=_cmd_status)

    history = sub.add_parser(
        "history", parents=[cluster, output], help="recent builds of a preset with failure reasons"
    )
    history.add_argument("preset")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--database-url", default=None)
    history.set_defaults(func=_cmd_history)

    reset = sub.add_parser(
        "reset", parents=[cluster], help="lift a preset's hard limit (sets prewarm.dev/retry)"
    )
    reset.add_argument("preset")
    reset.add_argument("--token", default=None, help="the retry value (default: a timestamp)")
    reset.set_defaults(func=_cmd_reset)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prewarm", description="Keep pools of prebuilt (warm) workspaces ready."
    )
    parser.add_argument("--version", action="version", version=f"prewarm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the operator (settings: PREWARM_* environment)")
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_cmd_run)

    migrate = sub.add_parser("migrate", help="apply the ledger's SQL migrations")
    migrate.add_argument(
        "--database-url", default=None, help="overrides PREWARM_DATABASE_URL for this run"
    )
    migrate.set_defaults(func=_cmd_migrate)

    dev = sub.add_parser(
        "dev",
        help="local control plane + PostgreSQL + operator + sample presets, until Ctrl-C",
    )
    dev.add_argument(
        "--apiserver-port",
        type=int,
        default=None,
        help="kube-apiserver port on 127.0.0.1 (PREWARM_DEV_APISERVER_PORT; default 6443)",
    )
    dev.add_argument("--no-operator", action="store_true", help="start everything but the operator")
    dev.add_argument(
        "--real-node",
        action="store_true",
        help="a real node instead (root; docs/decisions.md): the chart's operator as a pod",
    )
    dev.set_defaults(func=_cmd_dev)

    _add_user_commands(sub)

    sub.add_parser(
        "agent",
        help="the in-pod agent that re-initialises a claimed workspace (settings: PREWARM_* env)",
    ).set_defaults(func=_cmd_agent)
    return parser


def _prog() -> str:
    """`kubectl prewarm` when run as the kubectl plugin (kubectl-prewarm)."""
    name = os.path.basename(sys.argv[0] or "")
    return "kubectl prewarm" if name.startswith("kubectl-prewarm") else "prewarm"


def main(argv: Sequence[str] | None = None) -> int:
    from prewarm.k8s.lean_import import skip_sync_client

    skip_sync_client()  # before anything imports kopf or the client
    from prewarm.commands.errors import CliError, Exit

    parser = build_parser()
    parser.prog = _prog()
    args = parser.parse_args(argv)
    func: Command = args.func
    # A second Ctrl-C during shutdown must not print a traceback either.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(Exit.TERMINATED))
    try:
        return func(args)
    except CliProblem as problem:
        print(f"{parser.prog}: {problem}", file=sys.stderr)
        return int(Exit.FAILED)
    except CliError as error:
        print(f"{parser.prog} {args.command}: {error}", file=sys.stderr)
        return int(error.code)
    except KeyboardInterrupt:
        return int(Exit.INTERRUPTED)


def kubectl_plugin() -> int:
    """The `kubectl-prewarm` entry point: `kubectl prewarm status` runs this."""
    return main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
