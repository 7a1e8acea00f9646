"""Issue 15 on the real API server + kwok + PostgreSQL: a revert to a template
hard-limited before is announced again, schedules in two zones and at a
minute boundary, and TTL (a Ready workspace expires, a claimed one never)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.e2e.support import apply, events, get, items, preset_manifest, wait_until

from prewarm.commands.claim import claim_manifest
from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess

FAIL = {"sim.prewarm.dev/behavior": "fail"}
LIMIT_EVENT = "PrebuildFailureLimitReached"


def _status(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, ns, "preset", name).get("status") or {})


def _live(cluster: LocalCluster, ns: str, preset: str) -> list[Any]:
    found = items(cluster, ns, "prebuiltworkspaces", f"prewarm.dev/preset={preset}")
    return [w for w in found if not w["metadata"].get("deletionTimestamp")]


def _ready(cluster: LocalCluster, ns: str, preset: str) -> list[str]:
    return sorted(
        w["metadata"]["name"]
        for w in _live(cluster, ns, preset)
        if (w.get("status") or {}).get("phase") == "Ready" and not w["spec"].get("claimRef")
    )


def test_a_revert_to_a_template_hard_limited_before_is_limited_and_announced_again(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    broken = preset_manifest("flip", 2, labels=FAIL, failure_policy={"backoffBase": "1s"})
    apply(cluster, namespace, broken)
    wait_until(
        lambda: _status(cluster, namespace, "flip").get("prebuildStatus") == "HardLimited",
        what="HardLimited on template A",
    )
    wait_until(lambda: len(events(cluster, namespace, "flip", LIMIT_EVENT)) == 1, what="1 Event")
    hash_a = _status(cluster, namespace, "flip")["templateHash"]

    # Template B works: the preset recovers.
    apply(cluster, namespace, preset_manifest("flip", 2, failure_policy={"backoffBase": "1s"}))
    wait_until(lambda: len(_ready(cluster, namespace, "flip")) == 2, what="B: 2 Ready")
    assert _status(cluster, namespace, "flip")["prebuildStatus"] == "Normal"

    # Back to A: A's failures still count, so it is hard-limited at once (no new
    # attempt), and this new episode gets its own Event.
    apply(cluster, namespace, broken)
    wait_until(
        lambda: (
            (s := _status(cluster, namespace, "flip")).get("templateHash") == hash_a
            and s.get("prebuildStatus") == "HardLimited"
        ),
        what="HardLimited again after the revert",
    )
    wait_until(
        lambda: len(events(cluster, namespace, "flip", LIMIT_EVENT)) == 2,
        what="a second PrebuildFailureLimitReached for the new episode",
    )
    attempts_a = [
        w
        for w in items(cluster, namespace, "prebuiltworkspaces", "prewarm.dev/preset=flip")
        if w["spec"]["templateHash"] == hash_a
    ]
    assert attempts_a == [], "a hard-limited template gets no new attempt after the revert"


def _hours_now(zone: str) -> str:
    """The current hour in `zone` and the next one, for a cron that matches for a while."""
    hour = datetime.now(ZoneInfo(zone)).hour
    return f"{hour},{(hour + 1) % 24}"


def test_schedules_in_two_zones_and_one_that_starts_at_the_next_minute(
    cluster: LocalCluster, namespace: str, operator_factory: Any
) -> None:
    # A resync far longer than the test: only the pass's own wake-up at the
    # schedule's minute can apply the third preset's schedule in time.
    operator_factory(PREWARM_RESYNC_SECONDS="900")
    tokyo_hours = _hours_now("Asia/Tokyo")
    # The same cron in two zones: it matches now in Tokyo, and not in Los
    # Angeles (16 or 17 hours behind, so never the same hour of the day).
    for name, zone in (("tokyo", "Asia/Tokyo"), ("la", "America/Los_Angeles")):
        apply(
            cluster,
            namespace,
            preset_manifest(
                name,
                1,
                timezone=zone,
                schedules=[{"cron": f"* {tokyo_hours} * * *", "instances": 3}],
            ),
        )
    # Starts at the next full minute in Kolkata (a +05:30 zone), at least 15 s away.
    kolkata = ZoneInfo("Asia/Kolkata")
    start = (datetime.now(kolkata) + timedelta(seconds=75)).replace(second=0, microsecond=0)
    apply(
        cluster,
        namespace,
        preset_manifest(
            "soon",
            0,
            timezone="Asia/Kolkata",
            schedules=[{"cron": f"{start.minute}-59 {start.hour} * * *", "instances": 2}],
        ),
    )
    wait_until(lambda: len(_ready(cluster, namespace, "tokyo")) == 3, what="tokyo: 3 (scheduled)")
    wait_until(lambda: len(_ready(cluster, namespace, "la")) == 1, what="la: 1 (default)")
    assert _status(cluster, namespace, "tokyo")["desired"] == 3
    assert _status(cluster, namespace, "la")["desired"] == 1
    # Before its minute, nothing. Only while that minute is still ahead: with
    # the other two slow to warm (a loaded machine) it may already have come,
    # and then the creation times below are the check.
    if datetime.now(UTC) < start.astimezone(UTC) - timedelta(seconds=1):
        assert _ready(cluster, namespace, "soon") == []
    wait_until(
        lambda: len(_ready(cluster, namespace, "soon")) == 2,
        timeout=150,
        what=f"soon: 2 from {start.isoformat()} (the pass wakes itself; the resync is 15 min)",
    )
    created = min(
        datetime.fromisoformat(w["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
        for w in _live(cluster, namespace, "soon")
    )
    assert created >= start.astimezone(UTC), "nothing before the schedule's minute"


def test_ttl_replaces_a_ready_workspace_and_never_expires_a_claimed_one(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, preset_manifest("fresh", 1, ttl="6s"))
    first = wait_until(lambda: _ready(cluster, namespace, "fresh"), what="1 Ready")[0]
    cluster.kubectl(
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(claim_manifest("keeps", "fresh", "a")),
    )

    def bound_to() -> str | None:
        status = get(cluster, namespace, "workspaceclaim", "keeps").get("status") or {}
        return status.get("workspaceName") if status.get("phase") == "Bound" else None

    bound = wait_until(bound_to, what="the claim bound")
    assert bound == first
    # The pool refills; its new Ready workspace expires after 6 s and is replaced.
    refill = wait_until(lambda: _ready(cluster, namespace, "fresh"), what="refilled")[0]
    replacement = wait_until(
        lambda: (r := _ready(cluster, namespace, "fresh")) and r[0] != refill and r[0],
        timeout=60,
        what="the expired Ready workspace replaced by a new one",
    )
    assert replacement != refill
    # Long past its TTL, the claimed workspace is still there and still the claim's
    # (its phase stays Ready: the claimRef says whose it is).
    claimed = get(cluster, namespace, "prebuiltworkspace", bound)
    assert not claimed["metadata"].get("deletionTimestamp")
    assert claimed["spec"]["claimRef"]["name"] == "keeps"
    assert claimed["status"]["phase"] == "Ready"
