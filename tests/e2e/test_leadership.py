"""Leadership hand-over on a rollout (issue 18): the leader releases the Lease on
SIGTERM, so the stand-by takes over at once instead of a lease duration later.
The hand-over time is measured by `python -m bench handover` (docs/reliability.md),
not asserted here."""

from __future__ import annotations

import signal
import socket
from typing import Any

from tests.e2e.support import apply, get, items, preset_manifest, wait_until

from prewarm.commands.claim import claim_manifest
from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess

LEASE = "prewarm-operator"


def _identity(op: OperatorProcess) -> str:
    assert op.proc is not None
    return f"{socket.gethostname()}-{op.proc.pid}"


def _lease(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    return dict(get(cluster, namespace, "lease", LEASE)["spec"])


def test_issue18_sigterm_releases_the_lease_and_the_standby_takes_over(
    cluster: LocalCluster, namespace: str, operator_factory: Any
) -> None:
    # A 60 s lease: without the release the stand-by could not lead before it
    # had itself seen the Lease unchanged for 60 s, far beyond the waits below.
    first = operator_factory(PREWARM_LEASE_SECONDS="60")
    wait_until(lambda: "acquired leadership" in first.log_text(), what="first leads")
    second = operator_factory(dsn=first.dsn, PREWARM_LEASE_SECONDS="60")
    apply(cluster, namespace, preset_manifest("handover", 1))
    wait_until(
        lambda: (
            (get(cluster, namespace, "preset", "handover").get("status") or {}).get("ready") == 1
        ),
        what="1 warm",
    )
    before = _lease(cluster, namespace)
    assert before["holderIdentity"] == _identity(first)
    second_id = _identity(second)

    first.stop(signal.SIGTERM)  # returns once the process has exited
    assert first.proc is not None
    assert first.proc.returncode is not None
    # 1. Before it exited, the leader gave the Lease up (or the stand-by took it already).
    after_exit = _lease(cluster, namespace)
    assert after_exit.get("holderIdentity", "") in ("", second_id), after_exit
    assert "released leadership" in first.log_text()
    # 2. Then the stand-by leads: the next transition, and it serves the next claim.
    wait_until(
        lambda: "acquired leadership" in second.log_text(), timeout=20, what="second takes over"
    )
    taken = _lease(cluster, namespace)
    assert taken["holderIdentity"] == second_id
    assert taken["leaseTransitions"] == before["leaseTransitions"] + 1
    apply(cluster, namespace, claim_manifest("after-handover", "handover", "rita"))
    wait_until(
        lambda: any(
            (c.get("status") or {}).get("phase") == "Bound"
            for c in items(cluster, namespace, "workspaceclaims")
        ),
        what="the new leader binds a claim",
    )
