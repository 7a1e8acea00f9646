"""Demand mode (spec.prebuilds.autoscale) against the real control plane, the
operator process and PostgreSQL: the count follows the claims the ledger
recorded, the status says who decides it, and `kubectl scale` no longer does."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.support import apply, create_all, get, preset_manifest, wait_until

from prewarm.commands.claim import claim_manifest
from prewarm.devenv.cluster import LocalCluster

SLOW = "sim.prewarm.dev/ready-delay-ms"


def _status(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, ns, "preset", name).get("status") or {})


def _auto(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return dict(_status(cluster, ns, name).get("autoscale") or {})


def test_demand_mode_sizes_the_pool_from_claims_and_says_who_decides(
    cluster: LocalCluster, namespace: str, operator_factory: Any
) -> None:
    operator_factory(PREWARM_AUTOSCALE_READ_INTERVAL="1s")
    manifest = preset_manifest(
        "auto",
        7,  # ignored in demand mode
        autoscale={"min": 1, "max": 6, "window": "1m", "scaleDownDelay": "10m"},
    )
    # Builds that take 2 s (kwok): a measurable build time.
    manifest["spec"]["template"]["metadata"]["annotations"] = {SLOW: "2s"}
    apply(cluster, namespace, manifest)
    quiet = wait_until(
        lambda: (a := _auto(cluster, namespace, "auto")).get("reason") == "AtMin" and a,
        timeout=60,
        what="the first build measured, no claims: min",
    )
    assert quiet["decidedBy"] == "Autoscale"
    assert quiet["buildSecondsP90"] >= 1
    assert quiet["windowClaims"] == 0
    assert _status(cluster, namespace, "auto")["desired"] == 1

    # A burst: 12 claims at once, all in the window's last quarter.
    claims = [claim_manifest(f"c{i:02d}", "auto", f"user{i}") for i in range(12)]
    create_all(cluster, namespace, claims)
    busy = wait_until(
        lambda: (a := _auto(cluster, namespace, "auto")).get("windowClaims") == 12 and a,
        timeout=60,
        what="the burst in the ledger",
    )
    assert busy["arrivalsPerMinute"] == 48.0  # 12 in the last quarter of a minute
    assert busy["recommended"] > 1
    assert busy["predictedMissRatio"] is not None
    grown = wait_until(
        lambda: (d := _status(cluster, namespace, "auto")["desired"]) >= busy["recommended"] and d,
        what="desired follows the model",
    )

    # kubectl scale writes spec.prebuilds.instances, which demand mode does not read.
    cluster.kubectl("scale", "-n", namespace, "preset/auto", "--replicas=0")
    assert get(cluster, namespace, "preset", "auto")["spec"]["prebuilds"]["instances"] == 0
    wait_until(
        lambda: _auto(cluster, namespace, "auto").get("observedAt") != busy["observedAt"],
        what="a later read",
    )
    # Fewer claims per minute as the burst ages, but scaleDownDelay (10m) holds the count.
    assert _status(cluster, namespace, "auto")["desired"] >= grown

    # Turned off, the count is instances again and the autoscale status goes.
    manifest["spec"]["prebuilds"] = {"instances": 2}
    apply(cluster, namespace, manifest)
    wait_until(
        lambda: (
            (s := _status(cluster, namespace, "auto")).get("desired") == 2 and "autoscale" not in s
        ),
        what="back to instances",
    )


def test_a_matching_schedule_is_the_floor(
    cluster: LocalCluster, namespace: str, operator_factory: Any
) -> None:
    operator_factory(PREWARM_AUTOSCALE_READ_INTERVAL="1s")
    manifest = preset_manifest(
        "floor",
        0,
        autoscale={"min": 0, "max": 2, "window": "1m"},
        schedules=[{"cron": "* * * * *", "instances": 3}],
    )
    apply(cluster, namespace, manifest)
    auto = wait_until(
        lambda: (a := _auto(cluster, namespace, "floor")).get("reason") == "ScheduleFloor" and a,
        timeout=60,
        what="the schedule's floor, above max",
    )
    assert auto["decidedBy"] == "Schedule"
    assert _status(cluster, namespace, "floor")["desired"] == 3


def test_min_above_max_is_refused_by_the_api_server(cluster: LocalCluster, namespace: str) -> None:
    manifest = preset_manifest("bad", 0, autoscale={"min": 3, "max": 2})
    result = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False
    )
    assert result.returncode != 0
    assert "autoscale.min must be less than or equal to max" in result.stderr
