"""`prewarm run`: the operator process, as deployed."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import kopf

from prewarm import logs
from prewarm.settings import Settings


def run_operator(verbose: bool = False) -> int:
    settings = Settings()
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    if settings.log_format == "json":
        # The agent's shape (prewarm.logs), for kopf's records as for ours.
        logs.use_json()
    logging.getLogger("prewarm").setLevel(logging.DEBUG if verbose else logging.INFO)
    # kopf reports every handler call at INFO; ours are event hooks, so that is noise.
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if verbose else logging.WARNING)
    # kopf's liveness endpoint logs every probe (one line every 10 s per
    # replica), which buried the lines that mattered when a rollout hung.
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG if verbose else logging.WARNING)
    # Importing the module registers its handlers with kopf's default registry.
    import prewarm.handlers.registrations  # noqa: F401
    from prewarm.handlers import kopf_toggles

    # Before kopf.operator() makes its toggle sets: a fresh start over N objects
    # otherwise wakes N * N / 2 waiters before the first decision.
    kopf_toggles.install()
    from prewarm.handlers import process_memory

    process_memory.tune_gc()

    # Without POD_ID kopf names itself after getpass.getuser(), which raises in
    # the image: its numeric user (65532) has no passwd entry. Found on the real
    # node (tests/node); the kwok tiers never ran the image as a pod.
    # kopf reads it from the environment; the value comes from our settings.
    os.environ.setdefault("POD_ID", settings.pod_name or f"{socket.gethostname()}/{os.getpid()}")
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz"
            if settings.health_port
            else None,
        )
    )
    return 0
