"""`prewarm agent`: re-initialises a workspace pod for its new owner, once per generation.

Importing this package loads no I/O library; `run_agent` imports the runner
(and with it the Kubernetes client) when called.
"""

from __future__ import annotations

from collections.abc import Mapping


def run_agent(environ: Mapping[str, str] | None = None) -> int:
    """Run the agent with settings from `environ` (default os.environ); the exit code."""
    from prewarm.agent.runner import run_agent as _run

    return _run(environ)


__all__ = ["run_agent"]
