"""The official client's asyncio half without its synchronous half.

`kubernetes.aio` is a subpackage of `kubernetes`, so importing it runs the
synchronous package's `__init__` first: its models, config loaders, requests,
oauthlib and websocket, and kopf imports the synchronous models too when they
load. prewarm uses none of them (kopf logs in through `k8s.core.credentials`).
They were about 9 MiB of an idle operator's 82 (docs/decisions.md, "The
synchronous client is not loaded").
"""

from __future__ import annotations

import importlib.util
import sys

# Imported by kopf only if they load: its third-party model types, and its
# login through the synchronous client (a fallback prewarm replaces).
_SYNC_ONLY = ("kubernetes.client", "kubernetes.config")


def skip_sync_client() -> None:
    """Make `kubernetes` an empty package, so that importing `kubernetes.aio`
    loads only that; importing the synchronous client then fails as if it
    were not installed. Only before anything imported `kubernetes`: a process
    that has it already (a test run) keeps it whole."""
    if "kubernetes" in sys.modules:
        return
    spec = importlib.util.find_spec("kubernetes")
    if spec is None or spec.submodule_search_locations is None:
        return
    # A package module with its path and spec, its __init__ not run.
    sys.modules["kubernetes"] = importlib.util.module_from_spec(spec)
    for name in _SYNC_ONLY:
        sys.modules[name] = None  # type: ignore[assignment]  # import fails: "not installed"
