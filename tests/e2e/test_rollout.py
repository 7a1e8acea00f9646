"""Issue 15 on the real API server + kwok + PostgreSQL: a pool stays warm while
it changes, and what its infrastructure does to it is no build failure.

- A template change (with slow new pods) replaces the pool without Ready
  ever dropping below the wanted count, and a claim during it takes a warm
  workspace of the previous template instead of cold-starting.
- A new template whose pods fail stops at the hard limit and the previous
  template's warm workspaces keep serving (Progressing=False, RolloutBlocked).
- A Ready workspace whose pod someone deletes is Disrupted and replaced, and
  its preset records no failure.
"""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.support import apply, events, get, items, metric, preset_manifest, wait_until

from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess

SLOW = {"sim.prewarm.dev/ready-delay-ms": "4s"}


def _live(cluster: LocalCluster, ns: str, preset: str) -> list[Any]:
    return [
        w
        for w in items(cluster, ns, "prebuiltworkspaces", f"prewarm.dev/preset={preset}")
        if not w["metadata"].get("deletionTimestamp")
    ]


def _warm(cluster: LocalCluster, ns: str, preset: str) -> list[Any]:
    return [
        w
        for w in _live(cluster, ns, preset)
        if (w.get("status") or {}).get("phase") == "Ready" and not w["spec"].get("owner")
    ]


def _status(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, ns, "preset", name).get("status") or {})


def _slow(name: str, instances: int, rev: str, **kw: Any) -> dict[str, Any]:
    manifest = preset_manifest(name, instances, labels={"rev": rev}, **kw)
    manifest["spec"]["template"]["metadata"]["annotations"] = SLOW
    return manifest


def test_a_rollout_never_drops_ready_and_claims_take_the_previous_template(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, preset_manifest("roll", 3, labels={"rev": "1"}))
    wait_until(lambda: len(_warm(cluster, namespace, "roll")) == 3, what="3 warm")
    old = {w["spec"]["templateHash"] for w in _warm(cluster, namespace, "roll")}
    apply(cluster, namespace, _slow("roll", 3, "2"))
    new_hash = wait_until(
        lambda: (h := _status(cluster, namespace, "roll").get("templateHash")) not in old and h,
        what="the new template hash in the status",
    )
    # While the new pods take 4 s to be Ready: a claim is served warm, from the old template.
    apply(
        cluster,
        namespace,
        {
            "apiVersion": "prewarm.dev/v1alpha1",
            "kind": "WorkspaceClaim",
            "metadata": {"name": "during"},
            "spec": {"presetRef": {"name": "roll"}, "owner": "ann"},
        },
    )
    fewest = 3
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        live = _live(cluster, namespace, "roll")
        # Ready in the pool, or Ready and taken by the claim: never below 3.
        serving = [w for w in live if (w.get("status") or {}).get("phase") in ("Ready", "Claimed")]
        fewest = min(fewest, len(serving))
        warm = _warm(cluster, namespace, "roll")
        if len(warm) == 3 and all(w["spec"]["templateHash"] == new_hash for w in warm):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the rollout did not finish: {_status(cluster, namespace, 'roll')}")
    claim = get(cluster, namespace, "workspaceclaim", "during")["status"]
    assert claim["source"] == "prebuilt", claim
    taken = get(cluster, namespace, "prebuiltworkspace", claim["workspaceName"])
    assert taken["spec"]["templateHash"] in old  # the previous template served it
    assert fewest >= 3, f"warm workspaces dropped to {fewest} during the rollout"
    status = wait_until(
        lambda: (s := _status(cluster, namespace, "roll")).get("outdated") in (0, None) and s,
        what="no outdated workspace left",
    )
    assert status.get("previousTemplateHash") is None


def test_a_broken_new_template_never_takes_the_old_pool_down(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    policy = {"backoffBase": "1s", "backoffMax": "2s"}
    apply(cluster, namespace, preset_manifest("keep", 2, failure_policy=policy))
    wait_until(lambda: len(_warm(cluster, namespace, "keep")) == 2, what="2 warm")
    old = {w["metadata"]["name"] for w in _warm(cluster, namespace, "keep")}
    broken = preset_manifest(
        "keep", 2, labels={"sim.prewarm.dev/behavior": "fail"}, failure_policy=policy
    )
    apply(cluster, namespace, broken)
    status = wait_until(
        lambda: (
            (s := _status(cluster, namespace, "keep")).get("prebuildStatus") == "HardLimited" and s
        ),
        what="the new template hard-limited",
    )
    progressing = {c["type"]: c for c in status["conditions"]}["Progressing"]
    assert (progressing["status"], progressing["reason"]) == ("False", "RolloutBlocked")
    assert {w["metadata"]["name"] for w in _warm(cluster, namespace, "keep")} == old
    assert status["ready"] == 2
    assert status["outdated"] == 2


def test_a_deleted_pod_is_a_disruption_not_a_failure(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    apply(cluster, namespace, preset_manifest("lost", 1))
    (first,) = wait_until(
        lambda: (w := _warm(cluster, namespace, "lost")) and len(w) == 1 and w,
        what="1 warm",
    )
    name = first["metadata"]["name"]
    cluster.kubectl("delete", "pod", "-n", namespace, name, "--wait=false")
    wait_until(
        lambda: (w := _warm(cluster, namespace, "lost")) and w[0]["metadata"]["name"] != name,
        what="a replacement warm",
    )
    status = _status(cluster, namespace, "lost")
    assert status.get("lastFailure") is None, status
    assert status.get("prebuildStatus") == "Normal"
    assert events(cluster, namespace, "lost", "PrebuildFailed") == []
    disrupted = metric(
        operator.metrics(),
        "prewarm_prebuilds_disrupted_total",
        namespace=namespace,
        preset="lost",
        reason="PodDeleted",
    )
    assert disrupted == 1


def test_a_refused_workspace_create_backs_off_and_says_why(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    """Issue 15: a PrebuiltWorkspace the API server refuses (here a policy that
    denies them in this namespace) failed the pass every 5 s, unseen."""
    policy = f"no-prebuilds-{namespace}"
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\n"
            f"metadata: {{name: {policy}}}\n"
            "spec:\n  failurePolicy: Fail\n  matchConstraints:\n    resourceRules:\n"
            "    - apiGroups: [prewarm.dev]\n      apiVersions: ['*']\n"
            "      operations: [CREATE]\n      resources: [prebuiltworkspaces]\n"
            "  validations:\n  - expression: 'false'\n    message: no prebuilds in this namespace\n"
            "---\napiVersion: admissionregistration.k8s.io/v1\n"
            "kind: ValidatingAdmissionPolicyBinding\n"
            f"metadata: {{name: {policy}}}\n"
            f"spec:\n  policyName: {policy}\n  validationActions: [Deny]\n"
            "  matchResources:\n    namespaceSelector:\n      matchLabels:\n"
            f"        kubernetes.io/metadata.name: {namespace}\n"
        ),
    )
    try:
        # The binding takes a moment to be enforced: the preset comes after it is.
        wait_until(
            lambda: cluster.kubectl(
                "create", "-n", namespace, "-f", "-", "--dry-run=server", check=False,
                input=(
                    "apiVersion: prewarm.dev/v1alpha1\nkind: PrebuiltWorkspace\n"
                    "metadata: {name: probe}\nspec: {presetRef: {name: x}, templateHash: abcdef}\n"
                ),
            ).returncode != 0,
            what="the policy enforced",
        )  # fmt: skip
        apply(cluster, namespace, preset_manifest("refused", 1))
        status = wait_until(
            lambda: (
                (s := _status(cluster, namespace, "refused")).get("summary") == "CreateRefused"
                and s
            ),
            what="the CreateRefused status",
        )
        condition = {c["type"]: c for c in status["conditions"]}["CreateRefused"]
        assert condition["status"] == "True"
        assert "no prebuilds in this namespace" in condition["message"]
        assert status.get("lastFailure") is None  # no build, no failure
        wait_until(
            lambda: events(cluster, namespace, "refused", "WorkspaceCreateRefused"),
            what="the WorkspaceCreateRefused Event",
        )
        text = operator.metrics()
        refused = metric(
            text, "prewarm_workspace_creates_refused_total", namespace=namespace, preset="refused"
        )
        assert refused is not None
        assert refused >= 1
        assert not metric(
            text, "prewarm_reconcile_errors_total", namespace=namespace, preset="refused"
        )
    finally:
        cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy",
                        policy, check=False)  # fmt: skip
