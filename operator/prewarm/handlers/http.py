"""The operator's HTTP endpoint: /metrics for Prometheus and /readyz.

Ready means the operator can do all of its job. With PostgreSQL down it
still answers claims but makes no new prebuilds, so /readyz says 503 and
why (liveness stays kopf's /healthz: a restart would not bring the database
back).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

Readiness = Callable[[], dict[str, object]]


async def start_http(port: int, readiness: Readiness) -> web.AppRunner:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def readyz(_: web.Request) -> web.Response:
        report = readiness()
        status = 200 if report.get("ready") else 503
        return web.Response(status=status, text=json.dumps(report), content_type="application/json")

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), web.get("/readyz", readyz)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    # All interfaces: Prometheus scrapes it over the pod network.
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner
