"""The `prewarm` command: the composition root of every entry point."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence

from prewarm import __version__
from prewarm.devenv.errors import EnvironmentProblem

Command = Callable[[argparse.Namespace], int]


def _not_implemented(name: str) -> Command:
    def run(_: argparse.Namespace) -> int:
        print(f"prewarm {name}: not implemented yet", file=sys.stderr)
        return 2

    return run


def _cmd_migrate(args: argparse.Namespace) -> int:
    from prewarm.ledger.migrate import migrate
    from prewarm.settings import Settings

    dsn = args.database_url or Settings().database_url
    applied = migrate(dsn)
    print(
        f"prewarm migrate: {len(applied)} migration(s) applied"
        if applied
        else "prewarm migrate: up to date"
    )
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from prewarm.run import run_operator

    return run_operator(verbose=args.verbose)


def _cmd_dev(args: argparse.Namespace) -> int:
    from prewarm.devenv.dev import run_dev

    return run_dev(apiserver_port=args.apiserver_port, with_operator=not args.no_operator)


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
        default=int(os.environ.get("PREWARM_DEV_APISERVER_PORT", "6443")),
        help="kube-apiserver port on 127.0.0.1 (PREWARM_DEV_APISERVER_PORT; default 6443)",
    )
    dev.add_argument("--no-operator", action="store_true", help="start everything but the operator")
    dev.set_defaults(func=_cmd_dev)

    for name, text in (
        ("status", "presets, pool counts, hard-limit state and recent claims"),
        ("claim", "claim a workspace of a preset"),
        ("history", "recent builds of a preset with their failure reasons"),
        ("agent", "the in-pod agent that re-initialises a claimed workspace"),
        ("reset", "clear a preset's hard limit (sets prewarm.dev/retry)"),
    ):
        sub.add_parser(name, help=text).set_defaults(func=_not_implemented(name))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Command = args.func
    # A second Ctrl-C during shutdown must not print a traceback either.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return func(args)
    except EnvironmentProblem as problem:
        print(f"prewarm: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
