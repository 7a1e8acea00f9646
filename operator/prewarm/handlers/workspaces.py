"""Creating a workspace's pod and what it needs, shared by pool and claims."""

from __future__ import annotations

import asyncio
from datetime import datetime

from prewarm import metrics
from prewarm.api.agent_protocol import owner_secret_name
from prewarm.api.preset import PresetSpec
from prewarm.handlers.runtime import Runtime
from prewarm.handlers.watched import PresetKey
from prewarm.k8s.client import ApiError
from prewarm.planning.agent_access import render_agent_access
from prewarm.planning.failures import Outcome
from prewarm.planning.render import ClaimRef, render_pod


async def ensure_pod(
    rt: Runtime,
    namespace: str,
    preset_name: str,
    spec: PresetSpec,
    thash: str,
    workspace: str,
    workspace_uid: str,
    claim: ClaimRef | None = None,
    owner_secret: str | None = None,
) -> ApiError | None:
    """Create the pod (and, for presets with an agent, its narrow ServiceAccount,
    Role, RoleBinding and owner Secret first). Idempotent: what exists stays.

    Returns the API server's refusal of the pod, if it refused it: a rejection
    (no retry helps) or a full quota (`quota_exceeded`: retry later).
    """
    if spec.agent.on_claim:
        access = render_agent_access(namespace, workspace, workspace_uid)
        # The RoleBinding after its Role: the API server resolves the Role to check
        # the binding grants nothing its creator lacks, and answered 404 while the
        # Role was still being created (seen on the real node, builds then waited
        # for the preset's retry).
        bindings = [m for m in access if m["kind"] == "RoleBinding"]
        others = [m for m in access if m["kind"] != "RoleBinding"]
        await asyncio.gather(*(rt.kube.create_namespaced(m) for m in others))
        await asyncio.gather(*(rt.kube.create_namespaced(m) for m in bindings))
        if owner_secret:
            await copy_owner_secret(rt, namespace, owner_secret, workspace)
    pod = render_pod(
        spec,
        namespace,
        preset_name,
        thash,
        workspace,
        workspace_uid,
        claim,
        agent_image=rt.settings.agent_image,
    )
    try:
        await rt.kube.create_pod(namespace, pod)
    except ApiError as error:
        if error.conflict:
            return None  # already there: an earlier pass created it
        if error.rejected or error.quota_exceeded:
            return error
        raise
    return None


async def copy_owner_secret(rt: Runtime, namespace: str, source: str, workspace: str) -> None:
    """The claim's credentials into the workspace's own Secret, which only its
    agent can read. Done before the pod learns its new generation."""
    secret = await rt.kube.get_secret(namespace, source)
    await rt.kube.patch_secret(
        namespace, owner_secret_name(workspace), {"data": dict(secret.get("data") or {})}
    )


def record_disruption(
    rt: Runtime, key: PresetKey, what: str, workspace_uid: str, outcome: Outcome, at: datetime
) -> None:
    """A build of preset `key` lost to its infrastructure (a pool or a cold
    one): in the ledger and the metric, never a step toward the hard limit."""
    reason, message = str(outcome.reason), outcome.message
    rt.record_build(
        key,
        f"{what} disrupted",
        lambda: rt.ledger.record_build_disrupted(workspace_uid, reason, message, at),
        # A disrupted build leaves the failure window: the policy may change.
        failed=True,
    )
    metrics.prebuilds_disrupted.labels(*key, reason).inc()
