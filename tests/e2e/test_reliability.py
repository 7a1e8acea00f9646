"""Faults on the real control plane + kwok + PostgreSQL: kills, outages, replicas.

`make test` runs a short version of each; tests marked slow (`make test-full`)
run the long ones (more kills, a full minute of PostgreSQL outage).
"""

from __future__ import annotations

import json
import random
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from tests.e2e.support import apply, get, items, metric, preset_manifest, wait_until

from prewarm.commands.claim import claim_manifest
from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess
from prewarm.devenv.postgres import PostgresServer

Factory = Callable[..., OperatorProcess]


def _workspaces(cluster: LocalCluster, ns: str) -> list[Any]:
    return [
        w
        for w in items(cluster, ns, "prebuiltworkspaces")
        if not w["metadata"].get("deletionTimestamp")
    ]


def _warm(cluster: LocalCluster, ns: str) -> list[Any]:
    return [
        w
        for w in _workspaces(cluster, ns)
        if not w["spec"].get("owner") and (w.get("status") or {}).get("phase") != "Failed"
    ]


def _ready(cluster: LocalCluster, ns: str) -> int:
    return sum(1 for w in _warm(cluster, ns) if (w.get("status") or {}).get("phase") == "Ready")


def _bound(cluster: LocalCluster, ns: str) -> list[Any]:
    return [
        c
        for c in items(cluster, ns, "workspaceclaims")
        if (c.get("status") or {}).get("phase") == "Bound"
    ]


def _readyz(op: OperatorProcess) -> int:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{op.metrics_port}/readyz", timeout=5
        ) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _degraded(cluster: LocalCluster, ns: str, preset: str) -> bool:
    conditions = (get(cluster, ns, "preset", preset).get("status") or {}).get("conditions", [])
    return any(c["type"] == "Degraded" and c["status"] == "True" for c in conditions)


def _bound_claims_in_ledger(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        (rows,) = conn.execute("select count(*) from claims where bound_at is not null").fetchone()  # type: ignore[misc]
    return int(rows)


def _assert_consistent(cluster: LocalCluster, ns: str, dsn: str, desired: int) -> None:
    """The invariants every fault must leave intact."""
    workspaces = _workspaces(cluster, ns)
    assert len(_warm(cluster, ns)) <= desired, "more warm instances than desired"
    names = {w["metadata"]["name"] for w in workspaces}
    pods = items(cluster, ns, "pods", "prewarm.dev/workspace")
    live_pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    orphans = [p["metadata"]["name"] for p in live_pods if p["metadata"]["name"] not in names]
    assert not orphans, f"pods without a workspace: {orphans}"
    bound = [c["status"]["workspaceName"] for c in _bound(cluster, ns)]
    assert len(bound) == len(set(bound)), "a workspace was bound twice"
    with psycopg.connect(dsn) as conn:
        rows = dict(conn.execute("select workspace_uid::text, state::text from builds").fetchall())
    for w in workspaces:
        uid = w["metadata"]["uid"]
        assert uid in rows, f"workspace {w['metadata']['name']} has no ledger row"
        phase = (w.get("status") or {}).get("phase")
        if phase in ("Ready", "Claimed"):
            assert rows[uid] == "succeeded", f"{w['metadata']['name']} is {phase}, row {rows[uid]}"
        if phase == "Failed":
            assert rows[uid] == "failed"


@pytest.mark.parametrize(
    "kills",
    [pytest.param(3, id="3-kills"), pytest.param(10, id="10-kills", marks=pytest.mark.slow)],
)
def test_sigkill_during_convergence_and_claims(
    cluster: LocalCluster, namespace: str, operator_factory: Factory, kills: int
) -> None:
    op = operator_factory()
    desired = 12
    apply(cluster, namespace, preset_manifest("p", desired))
    rng = random.Random(kills)
    claims = 0
    for round_ in range(kills):
        time.sleep(rng.uniform(0.1, 1.5))
        if round_ % 2:
            for _ in range(2):
                apply(cluster, namespace, claim_manifest(f"c{claims}", "p", f"user{claims}"))
                claims += 1
            time.sleep(rng.uniform(0.0, 0.3))
        op.restart(signal.SIGKILL)
        assert len(_warm(cluster, namespace)) <= desired
    wait_until(lambda: len(_bound(cluster, namespace)) == claims, timeout=120, what="claims bound")
    wait_until(lambda: _ready(cluster, namespace) == desired, timeout=120, what="converged")
    time.sleep(2)  # let the last ledger writes land
    _assert_consistent(cluster, namespace, op.dsn, desired)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as pg:
        pg.create_database("ledger")
        yield pg


@pytest.mark.parametrize(
    "outage_s", [pytest.param(10, id="10s"), pytest.param(60, id="60s", marks=pytest.mark.slow)]
)
def test_postgres_outage_pauses_creates_not_claims_and_loses_nothing(
    cluster: LocalCluster,
    namespace: str,
    operator_factory: Factory,
    own_postgres: PostgresServer,
    outage_s: int,
) -> None:
    dsn = own_postgres.dsn("ledger")
    op = operator_factory(dsn=dsn)
    apply(cluster, namespace, preset_manifest("db", 2))
    wait_until(lambda: _ready(cluster, namespace) == 2, what="2 warm")
    assert _readyz(op) == 200

    own_postgres.pause()
    started = time.monotonic()
    apply(cluster, namespace, claim_manifest("during", "db", "olga"))
    wait_until(lambda: len(_bound(cluster, namespace)) == 1, what="claim bound without PostgreSQL")
    cluster.kubectl("scale", "-n", namespace, "preset/db", "--replicas=4")

    def degraded() -> bool:
        return _degraded(cluster, namespace, "db")

    wait_until(degraded, timeout=30, what="Degraded condition")
    assert _readyz(op) == 503
    before = len(_workspaces(cluster, namespace))
    time.sleep(max(0.0, outage_s - (time.monotonic() - started)))
    assert len(_workspaces(cluster, namespace)) == before, "created prebuilds without a ledger"
    assert op.proc is not None
    assert op.proc.poll() is None, "the operator crashed"

    own_postgres.resume()
    wait_until(lambda: _ready(cluster, namespace) == 4, timeout=60, what="creates resumed")
    wait_until(lambda: _readyz(op) == 200, timeout=30, what="ready again")
    wait_until(lambda: not degraded(), timeout=30, what="Degraded cleared")
    time.sleep(2)
    _assert_consistent(cluster, namespace, dsn, 4)
    assert _bound_claims_in_ledger(dsn) == 1, "the claim made during the outage is in the ledger"


def _healthz(op: OperatorProcess) -> int:
    url = f"http://127.0.0.1:{op.env['PREWARM_HEALTH_PORT']}/healthz"
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status)


def test_item4_operator_started_while_postgres_is_down_starts_degraded_and_catches_up(
    cluster: LocalCluster,
    namespace: str,
    operator_factory: Factory,
    own_postgres: PostgresServer,
) -> None:
    dsn = own_postgres.dsn("ledger")  # not even migrated yet
    own_postgres.pause()
    op = operator_factory(dsn=dsn)  # returns once /metrics answers
    assert _healthz(op) == 200
    assert _readyz(op) == 503
    assert metric(op.metrics(), "prewarm_ledger_up") == 0

    apply(cluster, namespace, preset_manifest("late", 2))

    def degraded() -> bool:
        return _degraded(cluster, namespace, "late")

    wait_until(degraded, timeout=30, what="Degraded condition")
    assert get(cluster, namespace, "preset", "late")["status"]["summary"] == "Degraded"
    assert _workspaces(cluster, namespace) == [], "created prebuilds without a ledger"
    apply(cluster, namespace, claim_manifest("early", "late", "uma"))
    wait_until(lambda: len(_bound(cluster, namespace)) == 1, what="claim served without a ledger")

    own_postgres.resume()
    resumed = time.monotonic()
    wait_until(lambda: _ready(cluster, namespace) == 2, timeout=60, what="creates caught up")
    caught_up = time.monotonic() - resumed
    wait_until(lambda: _readyz(op) == 200, timeout=30, what="ready")
    wait_until(lambda: not degraded(), timeout=30, what="Degraded cleared")
    print(f"2 warm {caught_up:.1f}s after PostgreSQL came back")
    assert op.proc is not None
    assert op.proc.poll() is None, "the operator restarted"
    wait_until(
        lambda: metric(op.metrics(), "prewarm_ledger_backlog") == 0, what="queued writes landed"
    )
    _assert_consistent(cluster, namespace, dsn, 2)
    assert _bound_claims_in_ledger(dsn) == 1, "the claim bound before PostgreSQL answered"


def test_a_preset_deleted_while_postgres_was_down_does_not_keep_the_operator_unready(
    cluster: LocalCluster,
    namespace: str,
    operator_factory: Factory,
    own_postgres: PostgresServer,
) -> None:
    # As in the node tier's deploy-manifest test: presets left by earlier work
    # are passed before the ledger opens, then deleted; the operator must turn
    # ready once PostgreSQL answers, with no preset left to pass again.
    dsn = own_postgres.dsn("ledger")
    own_postgres.pause()
    op = operator_factory(dsn=dsn)
    apply(cluster, namespace, preset_manifest("brief", 1))
    wait_until(lambda: _degraded(cluster, namespace, "brief"), timeout=30, what="Degraded")
    cluster.kubectl("delete", "-n", namespace, "preset/brief", "--wait=true")
    own_postgres.resume()
    wait_until(lambda: _readyz(op) == 200, timeout=60, what="ready with no preset left")


def test_api_server_restart_is_survived_without_restarting_the_operator(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, preset_manifest("api", 2))
    wait_until(lambda: _ready(cluster, namespace) == 2, what="2 warm")
    cluster.restart_apiserver(down_seconds=3)
    restarted = time.monotonic()
    apply(cluster, namespace, claim_manifest("after", "api", "pat"))
    wait_until(
        lambda: len(_bound(cluster, namespace)) == 1, timeout=90, what="claim bound after restart"
    )
    recovery = time.monotonic() - restarted
    # Stated bound: every watch is re-established within 60 s (see operator.py).
    try:
        wait_until(lambda: _ready(cluster, namespace) == 2, timeout=90, what="refilled")
    except AssertionError:
        print(cluster.kubectl("get", "pws,pods", "-n", namespace, "-o", "wide").stdout)
        raise
    assert operator.proc is not None
    assert operator.proc.poll() is None
    print(f"claim bound {recovery:.1f}s after the API server came back")


def test_two_replicas_one_leads_and_a_kill_hands_over(
    cluster: LocalCluster, namespace: str, operator_factory: Factory
) -> None:
    first = operator_factory()
    wait_until(lambda: "acquired leadership" in first.log_text(), what="first leads")
    second = operator_factory(dsn=first.dsn)
    apply(cluster, namespace, preset_manifest("ha", 2))
    wait_until(lambda: _ready(cluster, namespace) == 2, what="2 warm")
    time.sleep(2)
    assert "acquired leadership" not in second.log_text(), "two leaders"
    assert "bound to" not in second.log_text()

    first.stop(signal.SIGKILL)
    killed = time.monotonic()
    wait_until(
        lambda: "acquired leadership" in second.log_text(), timeout=60, what="second takes over"
    )
    handover = time.monotonic() - killed
    apply(cluster, namespace, claim_manifest("ha1", "ha", "quinn"))
    wait_until(lambda: len(_bound(cluster, namespace)) == 1, what="claim served by the new leader")
    # The API server shows Bound a moment before the operator logs it.
    wait_until(lambda: "bound to" in second.log_text(), timeout=10, what="the new leader bound it")
    print(f"handover after {handover:.1f}s (lease 4s)")


def test_huge_preset_is_capped_with_a_clear_condition(
    cluster: LocalCluster, namespace: str, operator_factory: Factory
) -> None:
    operator_factory(PREWARM_MAX_INSTANCES_PER_PRESET="5")
    apply(cluster, namespace, preset_manifest("huge", 10000))
    wait_until(lambda: _ready(cluster, namespace) == 5, timeout=60, what="5 warm")
    status = get(cluster, namespace, "preset", "huge")["status"]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert "capped at 5" in ready["message"]
    assert len(_workspaces(cluster, namespace)) == 5
    json.dumps(status)
