"""Failure storm: N presets whose every prebuild fails, all at once.

Each preset's pods carry sim.prewarm.dev/behavior=fail (kwok fails them at
once) and failurePolicy.backoffBase 1s. Counts API requests by verb and
resource and the ledger's `builds` rows until every preset reports
status.prebuildStatus HardLimited, then again over a further quiet window,
which should add no attempts. The background (kwok heartbeats, controller
manager) is measured for the same length before the presets exist.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from typing import Any

from bench.common import (
    BEHAVIOR,
    Watch,
    apply_presets,
    builds_rows,
    by_verb_resource,
    delete_namespace,
    delta,
    loadavg,
    request_table,
    requests,
    scrape,
    start_operator,
)
from bench.env import BenchEnv
from prewarm.api.constants import PLURAL_PRESETS
from prewarm.k8s.client import Kube
from prewarm.settings import Settings

PRESETS = int(os.environ.get("BENCH_STORM_PRESETS", "50"))
INSTANCES = int(os.environ.get("BENCH_STORM_INSTANCES", "10"))
AFTER_S = 20.0


def _status(obj: dict[str, Any]) -> str:
    return str((obj.get("status") or {}).get("prebuildStatus") or "")


async def _scrape(env: BenchEnv) -> Counter[Any]:
    return requests(await asyncio.to_thread(scrape, env))


async def _run(env: BenchEnv, ns: str, op: Any) -> dict[str, Any]:
    kube = await Kube.connect(os.environ.get("KUBECONFIG"))
    presets = Watch(kube, ns, PLURAL_PRESETS, keep=_status).start()
    try:
        await presets.until(lambda _: True, 30)
        load = loadavg()
        a = await _scrape(env)
        started = time.perf_counter()
        await apply_presets(
            env,
            ns,
            "f",
            PRESETS,
            INSTANCES,
            digits=2,
            labels={BEHAVIOR: "fail"},
            failure_policy={"backoffBase": "1s"},
        )
        await presets.until(
            lambda o: len(o) >= PRESETS and all(v == "HardLimited" for v in o.values()), 300
        )
        storm_s = time.perf_counter() - started
        b = await _scrape(env)
        rows_b = builds_rows(op.dsn)
        await asyncio.sleep(AFTER_S)
        c = await _scrape(env)
        rows_c = builds_rows(op.dsn)
    finally:
        await presets.stop()
        await kube.close()
    return {
        "load": load,
        "storm_s": storm_s,
        "during": by_verb_resource(delta(b, a)),
        "after": by_verb_resource(delta(c, b)),
        "rows_b": rows_b,
        "rows_c": rows_c,
    }


async def _background(env: BenchEnv, seconds: float) -> Counter[tuple[str, str]]:
    a = await _scrape(env)
    await asyncio.sleep(seconds)
    return by_verb_resource(delta(await _scrape(env), a))


def run(env: BenchEnv) -> tuple[str, str]:
    hard_limit = Settings().hard_limit
    ns = env.namespace("bench-storm")
    background = asyncio.run(_background(env, AFTER_S))
    op = start_operator(env, ns)
    try:
        r = asyncio.run(_run(env, ns, op))
    finally:
        op.stop()
    delete_namespace(env, ns)
    created = r["during"].get(("POST", "prebuiltworkspaces"), 0)
    pods = r["during"].get(("POST", "pods"), 0)
    after_creates = r["after"].get(("POST", "prebuiltworkspaces"), 0)
    bound = PRESETS * hard_limit
    body = [
        f"{PRESETS} presets x {INSTANCES} instances, every pod failed by kwok, "
        f"backoffBase 1s, hardLimit {hard_limit} (default); load before {r['load']}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| time until all {PRESETS} presets HardLimited | {r['storm_s']:.1f} s |",
        f"| PrebuiltWorkspaces created (attempts) | **{created}** (bound {PRESETS} x "
        f"{hard_limit} = {bound}) |",
        f"| Pods created (POST pods, incl. one dry-run per preset) | {pods} |",
        f"| ledger `builds` rows at HardLimited | {r['rows_b']['rows']} "
        f"({r['rows_b']['failed']} failed, {r['rows_b']['ready']} ready) |",
        f"| further {AFTER_S:.0f} s: workspaces created / new `builds` rows | "
        f"**{after_creates}** / **{r['rows_c']['rows'] - r['rows_b']['rows']}** |",
        "",
        f"Requests by verb and resource (apiserver_request_total deltas; 'background' is "
        f"{AFTER_S:.0f} s before the operator started, for scale):",
        "",
        request_table(
            {
                "storm (to HardLimited)": r["during"],
                f"next {AFTER_S:.0f} s": r["after"],
                f"background {AFTER_S:.0f} s": background,
            },
            keep=lambda k: k[0] != "WATCH",
        ),
    ]
    return "Failure storm: attempts and API calls until HardLimited", "\n".join(body)
