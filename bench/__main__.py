"""`python -m bench [NAME...]`: run benchmarks, print them, write docs/benchmarks.md.

Each benchmark starts from the same real parts as the e2e tests (local
kube-apiserver + kwok, PostgreSQL, the operator as a process) and returns a
titled Markdown section. Ratios within one run are the numbers to trust on a
shared 2-core machine; absolute times drift.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

from bench.env import bench_env, machine_line

BENCHMARKS = [
    "claims",
    "convergence",
    "steady",
    "scale",
    "restart",
    "storm",
    "profile",
    "peer",
    "handover",
    "autoscale",
]
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def _write_section(title: str, body: str, machine: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nWritten by `make bench`.\n"
    section = f"## {title}\n\n_Measured {machine}._\n\n{body}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = (
        pattern.sub(section + "\n", text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + section
    )
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("names", nargs="*", default=BENCHMARKS, help=", ".join(BENCHMARKS))
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    machine = machine_line()
    with bench_env() as env:
        for name in args.names:
            module = importlib.import_module(f"bench.{name}")
            title, body = module.run(env)
            print(f"\n## {title}\n{body}\n", flush=True)
            _write_section(title, body, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
