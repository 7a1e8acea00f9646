"""`python -m prewarm.agent`, same as `prewarm agent`."""

from __future__ import annotations

import sys

from prewarm.agent import run_agent

if __name__ == "__main__":
    sys.exit(run_agent())
