"""What the operator remembers between passes shrinks when its objects go
(issue 14: `replayed`, `claims_recorded`, `notified` and `phase_written` only grew)."""

from __future__ import annotations

import pytest
from tests.e2e.support import apply, create_all, items, metric, preset_manifest, wait_until

from prewarm.commands.claim import claim_manifest
from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess

KINDS = ("presets", "preset_uids", "workspaces", "claims")


def _memory(operator: OperatorProcess) -> dict[str, float]:
    text = operator.metrics()
    return {kind: metric(text, "prewarm_memory_entries", kind=kind) or 0.0 for kind in KINDS}


def _bound(cluster: LocalCluster, ns: str) -> int:
    return sum(
        1
        for c in items(cluster, ns, "workspaceclaims")
        if (c.get("status") or {}).get("phase") == "Bound"
    )


def _deleting_everything_empties_memory(
    cluster: LocalCluster, ns: str, operator: OperatorProcess, presets: int, per: int, claims: int
) -> None:
    for p in range(presets):
        apply(cluster, ns, preset_manifest(f"mem{p}", per))
    wait_until(
        lambda: len(items(cluster, ns, "prebuiltworkspaces")) >= presets * per,
        timeout=300,
        what=f"{presets * per} workspaces",
    )
    batch = [claim_manifest(f"m{i:04d}", f"mem{i % presets}", f"user{i}") for i in range(claims)]
    create_all(cluster, ns, batch)
    wait_until(lambda: _bound(cluster, ns) == claims, timeout=300, what=f"{claims} bound")
    # The gauges are set once per resync (1 s here): a sample taken before the
    # claims' first passes shows the workspaces but no claim yet, so wait for both.
    remembered = wait_until(
        lambda: (m := _memory(operator))["workspaces"] >= presets * per and m["claims"] > 0 and m,
        what="memory of every workspace and of the claims",
    )
    assert remembered["presets"] >= presets

    cluster.kubectl("delete", "-n", ns, "workspaceclaims", "--all", "--wait=false")
    cluster.kubectl("delete", "-n", ns, "presets", "--all", "--wait=false")
    wait_until(lambda: not items(cluster, ns, "prebuiltworkspaces"), timeout=300, what="all gone")
    wait_until(
        lambda: _memory(operator) == dict.fromkeys(KINDS, 0.0),
        timeout=60,
        what="memory back to nothing",
    )


def test_memory_shrinks_when_objects_are_deleted(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    _deleting_everything_empties_memory(cluster, namespace, operator, 2, 50, 50)


@pytest.mark.slow
def test_memory_shrinks_after_a_thousand_objects_are_deleted(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    # 2 presets x 350 warm + 300 claims (each takes one and the pool refills).
    _deleting_everything_empties_memory(cluster, namespace, operator, 2, 350, 300)
