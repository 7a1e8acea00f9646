"""The pool reconciler on the real API server + kwok + PostgreSQL, the operator
running as in production (a `prewarm run` process)."""

from __future__ import annotations

import signal
import time
from typing import Any

from tests.e2e.support import apply, events, get, items, metric, preset_manifest, wait_until

from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess

FAIL = {"sim.prewarm.dev/behavior": "fail"}


def _workspaces(cluster: LocalCluster, ns: str, preset: str) -> list[Any]:
    return items(cluster, ns, "prebuiltworkspaces", f"prewarm.dev/preset={preset}")


def _live(cluster: LocalCluster, ns: str, preset: str) -> list[Any]:
    return [
        w for w in _workspaces(cluster, ns, preset) if not w["metadata"].get("deletionTimestamp")
    ]


def _ready_hashes(cluster: LocalCluster, ns: str, preset: str) -> list[str]:
    return sorted(
        w["spec"]["templateHash"]
        for w in _live(cluster, ns, preset)
        if (w.get("status") or {}).get("phase") == "Ready"
    )


def _status(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, ns, "preset", name).get("status") or {})


def test_pool_converges_rolls_out_and_scales(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, preset_manifest("web", 3))
    first = wait_until(
        lambda: (h := _ready_hashes(cluster, namespace, "web")) and len(h) == 3 and h,
        what="3 Ready prebuilds",
    )
    wait_until(
        lambda: _status(cluster, namespace, "web").get("ready") == 3, what="status.ready == 3"
    )
    assert len(items(cluster, namespace, "pods", "prewarm.dev/preset=web")) == 3

    # A template change replaces all three with instances of the new hash.
    apply(cluster, namespace, preset_manifest("web", 3, labels={"rev": "2"}))
    new_hash = wait_until(
        lambda: (
            (h := _ready_hashes(cluster, namespace, "web"))
            and len(h) == 3
            and len(set(h)) == 1
            and h[0] != first[0]
            and h[0]
        ),
        what="3 Ready prebuilds of the new template",
    )
    wait_until(lambda: len(_workspaces(cluster, namespace, "web")) == 3, what="old ones gone")
    assert _status(cluster, namespace, "web")["templateHash"] == new_hash

    # Scale down 3 -> 1 through the scale subresource, then up 1 -> 5.
    cluster.kubectl("scale", "-n", namespace, "preset/web", "--replicas=1")
    wait_until(lambda: len(_workspaces(cluster, namespace, "web")) == 1, what="scaled to 1")
    cluster.kubectl("scale", "-n", namespace, "preset/web", "--replicas=5")
    wait_until(lambda: len(_ready_hashes(cluster, namespace, "web")) == 5, what="scaled to 5")
    assert len(_workspaces(cluster, namespace, "web")) == 5
    wait_until(lambda: _status(cluster, namespace, "web").get("ready") == 5, what="ready 5")
    status = _status(cluster, namespace, "web")
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "True"

    text = operator.metrics()
    assert metric(text, "prewarm_preset_desired", namespace=namespace, preset="web") == 5
    assert metric(text, "prewarm_preset_eligible", namespace=namespace, preset="web") == 5
    assert (
        metric(text, "prewarm_prebuilds_started_total", namespace=namespace, preset="web")
        == 3 + 3 + 4
    )
    assert metric(text, "prewarm_preset_hard_limited", namespace=namespace, preset="web") == 0


def test_failing_preset_stops_at_the_hard_limit_and_retry_resumes(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    # Ten wanted, all fail: slow start keeps it to exactly three attempts.
    apply(
        cluster,
        namespace,
        preset_manifest("broken", 10, labels=FAIL, failure_policy={"backoffBase": "1s"}),
    )
    wait_until(
        lambda: _status(cluster, namespace, "broken").get("prebuildStatus") == "HardLimited",
        what="HardLimited",
    )
    status = _status(cluster, namespace, "broken")
    limited = {c["type"]: c for c in status["conditions"]}["HardLimited"]
    assert limited["status"] == "True"
    assert "PodFailed" in limited["message"]

    time.sleep(4)  # several 1 s resyncs
    operator.restart(signal.SIGKILL)
    time.sleep(4)
    assert len(_workspaces(cluster, namespace, "broken")) == 3, "no attempt after the limit"
    assert len(events(cluster, namespace, "broken", "PrebuildFailureLimitReached")) == 1
    log = operator.log_text()
    assert log.count(f"preset {namespace}/broken is hard-limited") >= 4, "warn on every loop"
    text = operator.metrics()
    assert metric(text, "prewarm_preset_hard_limited", namespace=namespace, preset="broken") == 1

    cluster.kubectl(
        "annotate", "-n", namespace, "preset/broken", "prewarm.dev/retry=first", "--overwrite"
    )
    wait_until(
        lambda: len(events(cluster, namespace, "broken", "PrebuildRetryRequested")) == 1,
        what="retry Event",
    )
    # New attempts happen, fail again, and the new epoch gets its own notification.
    wait_until(
        lambda: len(events(cluster, namespace, "broken", "PrebuildFailureLimitReached")) == 2,
        what="second limit Event after retry",
    )
    assert len(events(cluster, namespace, "broken", "HardLimitReset")) == 1


def test_hard_limit_zero_keeps_retrying_with_backoff(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(
        cluster,
        namespace,
        preset_manifest(
            "stubborn",
            1,
            labels=FAIL,
            failure_policy={"hardLimit": 0, "backoffBase": "1s", "backoffMax": "2s"},
        ),
    )

    def attempts() -> int:
        total = metric(
            operator.metrics(),
            "prewarm_prebuilds_started_total",
            namespace=namespace,
            preset="stubborn",
        )
        return int(total or 0)

    wait_until(lambda: attempts() >= 5, timeout=90, what="five attempts")
    status = _status(cluster, namespace, "stubborn")
    assert status["prebuildStatus"] == "Normal"
    assert status.get("backoffUntil") or status["lastFailure"]["reason"] == "PodFailed"
    assert not events(cluster, namespace, "stubborn", "PrebuildFailureLimitReached")


def test_template_rejected_by_the_api_server_fails_validation_without_retries(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    bad = [{"name": "Not_A_DNS_Label", "image": "busybox"}]
    apply(cluster, namespace, preset_manifest("invalid", 3, containers=bad))
    wait_until(
        lambda: _status(cluster, namespace, "invalid").get("prebuildStatus") == "ValidationFailed",
        what="ValidationFailed",
    )
    dry_runs_before = _dry_run_pod_creates(cluster)
    time.sleep(4)  # several resyncs
    assert _dry_run_pod_creates(cluster) == dry_runs_before, "no retry storm"
    assert _workspaces(cluster, namespace, "invalid") == []
    assert len(events(cluster, namespace, "invalid", "ValidationFailed")) == 1
    condition = {c["type"]: c for c in _status(cluster, namespace, "invalid")["conditions"]}
    assert "Not_A_DNS_Label" in condition["ValidationFailed"]["message"]

    # Fixing the template lifts it.
    apply(cluster, namespace, preset_manifest("invalid", 1))
    wait_until(lambda: len(_ready_hashes(cluster, namespace, "invalid")) == 1, what="fixed")
    assert _status(cluster, namespace, "invalid")["prebuildStatus"] == "Normal"


def _requests(cluster: LocalCluster, verb: str, resource: str, *label: str) -> float:
    """Requests the API server has answered so far, with every `label` (e.g. 'code="409"')."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("apiserver_request_total{")
            and f'resource="{resource}"' in line
            and f'verb="{verb}"' in line
            and all(x in line for x in label)
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _pod_creates(cluster: LocalCluster, *label: str) -> float:
    return _requests(cluster, "POST", "pods", *label)


def _dry_run_pod_creates(cluster: LocalCluster) -> float:
    return _pod_creates(cluster, 'dry_run="All"')


def test_each_pod_is_created_once_although_the_watches_lag(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    # A workspace often shows in its watch before its pod does; a pass in
    # between must not take the pod for never created and POST it again.
    # Nor may a pass that runs before the preset's own status shows the
    # dry-run verdict dry-run the template again.
    conflicts_before = _pod_creates(cluster, 'code="409"')
    dry_runs_before = _dry_run_pod_creates(cluster)
    apply(cluster, namespace, preset_manifest("once", 30))
    wait_until(
        lambda: _status(cluster, namespace, "once").get("ready") == 30, timeout=90, what="30 Ready"
    )
    assert _pod_creates(cluster, 'code="409"') == conflicts_before
    # Nor is its template validated again while the preset's status lags behind.
    assert _dry_run_pod_creates(cluster) == dry_runs_before + 1


def test_a_disrupted_workspace_is_deleted_without_a_refused_delete(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    """The pass that records a disruption (a status write) and then deletes the
    workspace conditions the delete on the resourceVersion its own write
    returned: the one read before the write drew a 409 and took another pass."""
    apply(cluster, namespace, preset_manifest("lost", 2))
    wait_until(lambda: len(_ready_hashes(cluster, namespace, "lost")) == 2, what="2 Ready")
    refused_before = _requests(cluster, "DELETE", "prebuiltworkspaces", 'code="409"')
    victim = _workspaces(cluster, namespace, "lost")[0]["metadata"]["name"]
    cluster.kubectl("delete", "-n", namespace, "pod", victim, "--wait=false")
    wait_until(
        lambda: (
            victim not in [w["metadata"]["name"] for w in _workspaces(cluster, namespace, "lost")]
        ),
        what="the disrupted workspace deleted",
    )
    wait_until(lambda: len(_ready_hashes(cluster, namespace, "lost")) == 2, what="replaced")
    assert _requests(cluster, "DELETE", "prebuiltworkspaces", 'code="409"') == refused_before


def test_deleting_a_preset_removes_its_workspaces_and_pods(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, preset_manifest("gone", 2))
    wait_until(lambda: len(_ready_hashes(cluster, namespace, "gone")) == 2, what="2 Ready")
    cluster.kubectl("delete", "-n", namespace, "preset/gone", "--wait=true", "--timeout=30s")
    wait_until(lambda: _workspaces(cluster, namespace, "gone") == [], what="workspaces gone")
    wait_until(
        lambda: items(cluster, namespace, "pods", "prewarm.dev/preset=gone") == [],
        what="pods gone",
    )
    wait_until(
        lambda: (
            metric(operator.metrics(), "prewarm_preset_desired", namespace=namespace, preset="gone")
            is None
        ),
        what="gauges forgotten",
    )


def test_presets_held_back_by_the_global_create_cap_start_when_room_frees_up(
    cluster: LocalCluster, namespace: str, operator_factory: Any
) -> None:
    # Room for two prebuilds in flight across all presets, and a resync far
    # away: the presets the cap held back must be woken by the others' progress.
    operator_factory(PREWARM_MAX_CREATES_GLOBAL="2", PREWARM_RESYNC_SECONDS="600")

    def slow(name: str) -> dict[str, Any]:
        manifest = preset_manifest(name, 2)
        template = manifest["spec"]["template"]["metadata"]
        template["annotations"] = {"sim.prewarm.dev/ready-delay-ms": "3s"}
        return manifest

    apply(cluster, namespace, slow("cap-a"))
    wait_until(
        lambda: len(_workspaces(cluster, namespace, "cap-a")) == 2, what="cap-a takes the room"
    )
    for name in ("cap-b", "cap-c"):
        apply(cluster, namespace, slow(name))
    wait_until(
        lambda: all(
            _status(cluster, namespace, n).get("ready") == 2 for n in ("cap-a", "cap-b", "cap-c")
        ),
        timeout=90,
        what="every preset's 2 prebuilds Ready long before the resync",
    )


def test_a_pod_slow_to_become_ready_shows_building_then_ready(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    manifest = preset_manifest("slow", 1)
    manifest["spec"]["template"]["metadata"]["annotations"] = {
        "sim.prewarm.dev/ready-delay-ms": "10s"
    }
    apply(cluster, namespace, manifest)

    def phases() -> list[str]:
        return [(w.get("status") or {}).get("phase", "") for w in _live(cluster, namespace, "slow")]

    wait_until(lambda: phases() == ["Building"], timeout=30, what="Building after 5 s")
    wait_until(lambda: phases() == ["Ready"], timeout=30, what="then Ready")


def _condition(cluster: LocalCluster, ns: str, name: str, type_: str) -> dict[str, Any]:
    conditions = _status(cluster, ns, name).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def test_item10_a_schedule_problem_is_a_condition_the_status_column_and_an_event(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    cases = {
        "mars": ({"timezone": "Mars/Olympus"}, "UnknownTimezone", "Mars/Olympus"),
        "feb31": ({"timezone": "UTC"}, "CronNeverFires", "0 0 31 2 *"),
    }
    never = {"cron": "0 0 31 2 *", "instances": 2}
    for name, (extra, _, _) in cases.items():
        apply(cluster, namespace, preset_manifest(name, 1, schedules=[never], **extra))
    for name, (_, reason, named) in cases.items():
        condition = wait_until(
            lambda n=name: (
                _condition(cluster, namespace, n, "ScheduleInvalid").get("status") == "True"
                and _condition(cluster, namespace, n, "ScheduleInvalid")
            ),
            what=f"{name}: ScheduleInvalid",
        )
        assert condition["reason"] == reason
        assert named in condition["message"]
        status = _status(cluster, namespace, name)
        assert (status["summary"], status["prebuildStatus"], status["desired"]) == (
            "ScheduleInvalid",
            "Normal",
            1,
        )
        (event,) = wait_until(
            lambda n=name: events(cluster, namespace, n, "InvalidSchedule"), what="Event"
        )
        assert event["type"] == "Warning"
        assert named in event["message"]
    table = cluster.kubectl("get", "presets", "-n", namespace).stdout
    assert table.count("ScheduleInvalid") == 2, table
    exposed = operator.metrics()
    for name in cases:
        assert metric(exposed, "prewarm_preset_schedule_invalid", preset=name) == 1

    # Fixed: the condition clears and STATUS is Normal again.
    apply(cluster, namespace, preset_manifest("mars", 1, schedules=[], timezone="UTC"))
    wait_until(
        lambda: _condition(cluster, namespace, "mars", "ScheduleInvalid").get("status") == "False",
        what="ScheduleInvalid cleared",
    )
    assert _status(cluster, namespace, "mars")["summary"] == "Normal"
    assert len(events(cluster, namespace, "mars", "InvalidSchedule")) == 1
