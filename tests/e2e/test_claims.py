"""Claims on the real API server: warm hand-over, cold starts, races, bad input."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import psycopg
import pytest
from tests.e2e.support import apply, events, get, items, preset_manifest, wait_until

from prewarm.commands.claim import claim_manifest
from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess


def _ready(cluster: LocalCluster, ns: str, preset: str) -> int:
    return sum(
        1
        for w in items(cluster, ns, "prebuiltworkspaces", f"prewarm.dev/preset={preset}")
        if (w.get("status") or {}).get("phase") == "Ready" and not w["spec"].get("owner")
    )


def _claims(cluster: LocalCluster, ns: str) -> list[Any]:
    return items(cluster, ns, "workspaceclaims")


def _phase(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, ns, "workspaceclaim", name).get("status") or {})


def _claim_list(prefix: str, preset: str, n: int) -> dict[str, Any]:
    """A List of `n` claims on `preset` for users user0..; names `{prefix}0000`.."""
    items = [claim_manifest(f"{prefix}{i:04d}", preset, f"user{i}") for i in range(n)]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def test_hundred_claims_against_sixty_warm(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, preset_manifest("pool", 60))
    wait_until(lambda: _ready(cluster, namespace, "pool") == 60, timeout=120, what="60 warm")

    # Paused, the pool cannot refill while the claims arrive, so exactly the 60
    # warm ones go prebuilt (in kwok a refill is Ready within a second and
    # would rightly serve later claims). Claims still take warm workspaces.
    cluster.kubectl("annotate", "-n", namespace, "preset/pool", "prewarm.dev/paused=true")
    claims = _claim_list("c", "pool", 100)
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(claims))
    bound = wait_until(
        lambda: (
            (
                c := [
                    x
                    for x in _claims(cluster, namespace)
                    if (x.get("status") or {}).get("phase") == "Bound"
                ]
            )
            and len(c) == 100
            and c
        ),
        timeout=180,
        what="100 bound claims",
    )
    sources = Counter(c["status"]["source"] for c in bound)
    assert sources == {"prebuilt": 60, "cold": 40}
    workspaces = [c["status"]["workspaceName"] for c in bound]
    assert len(set(workspaces)) == 100, "a workspace was bound twice"

    # Each bound workspace belongs to its claim, and its pod knows the owner
    # (a claim binds first: the take and the pod's annotations follow it).
    def handed_over() -> tuple[dict[str, Any], dict[str, Any]] | None:
        by_name = {
            w["metadata"]["name"]: w
            for w in items(cluster, namespace, "prebuiltworkspaces", "prewarm.dev/preset=pool")
        }
        pods = {p["metadata"]["name"]: p for p in items(cluster, namespace, "pods")}
        names = [c["status"]["workspaceName"] for c in bound]
        done = all(
            by_name[n]["spec"].get("owner")
            and (pods[n]["metadata"].get("annotations") or {}).get("prewarm.dev/owner")
            for n in names
        )
        return (by_name, pods) if done else None

    by_name, pods = wait_until(handed_over, what="every take and its annotations")
    for claim in bound:
        ws = by_name[claim["status"]["workspaceName"]]
        assert ws["spec"]["owner"] == claim["spec"]["owner"]
        assert [o["kind"] for o in ws["metadata"]["ownerReferences"]] == ["WorkspaceClaim"]
        annotations = pods[ws["metadata"]["name"]]["metadata"]["annotations"]
        assert annotations["prewarm.dev/owner"] == claim["spec"]["owner"]
        assert int(annotations["prewarm.dev/reinit-generation"]) >= 1

    # Resumed, the pool refills to its size.
    cluster.kubectl("annotate", "-n", namespace, "preset/pool", "prewarm.dev/paused-")
    wait_until(lambda: _ready(cluster, namespace, "pool") == 60, timeout=120, what="refilled")

    with psycopg.connect(operator.dsn) as conn:
        rows = conn.execute(
            "select source, count(*) from claims where bound_at is not null group by source"
        ).fetchall()
    assert dict(rows) == {"prebuilt": 60, "cold": 40}
    assert len(events(cluster, namespace, "c0099", "ColdStart")) <= 1


def test_deleting_a_claim_deletes_its_workspace_but_deleting_the_preset_keeps_claimed(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, preset_manifest("keep", 2))
    wait_until(lambda: _ready(cluster, namespace, "keep") == 2, what="2 warm")
    apply(cluster, namespace, claim_manifest("mine", "keep", "alice"))
    apply(cluster, namespace, claim_manifest("yours", "keep", "bob"))
    wait_until(lambda: _phase(cluster, namespace, "mine").get("phase") == "Bound", what="bound")
    wait_until(lambda: _phase(cluster, namespace, "yours").get("phase") == "Bound", what="bound")
    mine = _phase(cluster, namespace, "mine")["workspaceName"]
    yours = _phase(cluster, namespace, "yours")["workspaceName"]
    for name in (mine, yours):  # the takes follow Bound
        wait_until(
            lambda n=name: get(cluster, namespace, "prebuiltworkspace", n)["spec"].get("owner"),
            what=f"{name} taken",
        )

    cluster.kubectl("delete", "-n", namespace, "preset/keep", "--wait=true")
    wait_until(lambda: _ready(cluster, namespace, "keep") == 0, what="pool gone")
    assert get(cluster, namespace, "prebuiltworkspace", mine)["spec"]["owner"] == "alice"

    cluster.kubectl("delete", "-n", namespace, "workspaceclaim/mine", "--wait=true")
    cluster.kubectl(
        "wait", "-n", namespace, f"prebuiltworkspace/{mine}", "--for=delete", "--timeout=60s"
    )
    cluster.kubectl("wait", "-n", namespace, f"pod/{mine}", "--for=delete", "--timeout=60s")
    assert get(cluster, namespace, "prebuiltworkspace", yours)["spec"]["owner"] == "bob"


def test_bad_claims_get_a_clear_answer_and_nothing_half_done(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, claim_manifest("orphan", "no-such-preset", "carol"))
    wait_until(
        lambda: any(
            c["reason"] == "PresetNotFound"
            for c in _phase(cluster, namespace, "orphan").get("conditions", [])
        ),
        what="PresetNotFound condition",
    )
    assert _phase(cluster, namespace, "orphan")["phase"] == "Pending"

    apply(cluster, namespace, preset_manifest("solo", 1))
    wait_until(lambda: _ready(cluster, namespace, "solo") == 1, what="1 warm")
    apply(cluster, namespace, claim_manifest("nosecret", "solo", "dave", secret="missing"))
    wait_until(
        lambda: any(
            c["reason"] == "SecretNotFound"
            for c in _phase(cluster, namespace, "nosecret").get("conditions", [])
        ),
        what="SecretNotFound condition",
    )
    assert _ready(cluster, namespace, "solo") == 1, "no workspace taken for a claim that waits"

    # A preset in another namespace cannot even be named.
    other = claim_manifest("elsewhere", "solo", "erin")
    other["spec"]["presetRef"]["namespace"] = "kube-system"
    rejected = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(other), check=False
    )
    assert rejected.returncode != 0
    assert "presetRef" in rejected.stderr

    # The owner cannot change after binding.
    apply(cluster, namespace, claim_manifest("bound", "solo", "frank"))
    wait_until(lambda: _phase(cluster, namespace, "bound").get("phase") == "Bound", what="bound")
    changed = claim_manifest("bound", "solo", "mallory")
    result = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(changed), check=False
    )
    assert result.returncode != 0
    assert "owner" in result.stderr

    # The secret appears: the waiting claim binds (cold, the pool's one went to frank or it).
    cluster.kubectl("create", "secret", "generic", "missing", "-n", namespace, "--from-literal=t=x")
    wait_until(
        lambda: _phase(cluster, namespace, "nosecret").get("phase") == "Bound",
        timeout=60,
        what="claim bound once its secret exists",
    )


def test_hard_limited_preset_fails_claims_instead_of_building(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(
        cluster,
        namespace,
        preset_manifest(
            "doomed",
            1,
            labels={"sim.prewarm.dev/behavior": "fail"},
            failure_policy={"backoffBase": "1s"},
        ),
    )
    wait_until(
        lambda: (
            (get(cluster, namespace, "preset", "doomed").get("status") or {}).get("prebuildStatus")
            == "HardLimited"
        ),
        what="HardLimited",
    )
    apply(cluster, namespace, claim_manifest("hopeful", "doomed", "gina"))
    wait_until(
        lambda: _phase(cluster, namespace, "hopeful").get("phase") == "Failed", what="Failed"
    )
    reasons = [c["reason"] for c in _phase(cluster, namespace, "hopeful")["conditions"]]
    assert "PresetHardLimited" in reasons
    assert not any(
        w["spec"].get("owner") == "gina" for w in items(cluster, namespace, "prebuiltworkspaces")
    )


# The issue asks for 1000; on a 2-core machine 900 cold starts did not finish
# within 10 minutes next to a CI run, so the slow test races 300.
RACERS = 300


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_claims_race_for_a_hundred_while_the_preset_changes(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, preset_manifest("race", 100))
    wait_until(lambda: _ready(cluster, namespace, "race") == 100, timeout=300, what="100 warm")
    cluster.kubectl("annotate", "-n", namespace, "preset/race", "prewarm.dev/paused=true")
    claims = _claim_list("r", "race", RACERS)
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(claims), timeout=600)
    # Edit the preset while the claims are being served: a new template hash.
    apply(cluster, namespace, preset_manifest("race", 100, labels={"rev": "2"}))
    cluster.kubectl(
        "annotate", "-n", namespace, "preset/race", "prewarm.dev/paused=true", "--overwrite"
    )
    bound = wait_until(
        lambda: (
            (
                c := [
                    x
                    for x in _claims(cluster, namespace)
                    if (x.get("status") or {}).get("phase") == "Bound"
                ]
            )
            and len(c) == RACERS
            and c
        ),
        timeout=1200,
        interval=2,
        what=f"{RACERS} bound claims",
    )
    sources = Counter(c["status"]["source"] for c in bound)
    assert sources["prebuilt"] <= 100
    assert sources["prebuilt"] + sources["cold"] == RACERS
    workspaces = [c["status"]["workspaceName"] for c in bound]
    assert len(set(workspaces)) == RACERS, "a workspace was bound twice"


def test_item6_a_claim_for_a_missing_preset_fails_after_the_wait_limit_with_an_event(
    cluster: LocalCluster, namespace: str, operator_factory: Any
) -> None:
    operator_factory(PREWARM_CLAIM_WAIT_LIMIT="5s")
    applied = time.monotonic()
    apply(cluster, namespace, claim_manifest("ghost", "deleted-preset", "gina"))
    # Within the limit the preset may still appear: this one does and binds.
    apply(cluster, namespace, claim_manifest("early", "late", "hank"))
    apply(cluster, namespace, preset_manifest("late", 1))
    wait_until(lambda: _phase(cluster, namespace, "early").get("phase") == "Bound", what="bound")

    failed = wait_until(
        lambda: (s := _phase(cluster, namespace, "ghost")).get("phase") == "Failed" and s,
        timeout=30,
        what="the claim for a missing preset fails",
    )
    print(f"the claim failed {time.monotonic() - applied:.1f}s after it was applied (limit 5s)")
    (bound,) = [c for c in failed["conditions"] if c["type"] == "Bound"]
    assert bound["reason"] == "PresetNotFound"
    assert "gave up after waiting 5s" in bound["message"]
    (event,) = wait_until(lambda: events(cluster, namespace, "ghost", "ClaimFailed"), what="Event")
    assert event["type"] == "Warning"
    assert "PresetNotFound" in event["message"]
