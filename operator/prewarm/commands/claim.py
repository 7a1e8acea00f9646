"""`prewarm claim --preset P --owner O [--param K=V ...] [--wait]`: ask for a
workspace, say how long it took. The spec flags are in commands/claim_flags.py."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass

from prewarm.api.constants import API_VERSION, KIND_WORKSPACE_CLAIM, PLURAL_WORKSPACE_CLAIMS
from prewarm.api.reasons import REASON_REINIT_RETRYING, REASON_REINIT_SUCCEEDED, REINITIALIZED
from prewarm.commands.claim_flags import ClaimOptions
from prewarm.commands.connect import Target, connect_kube
from prewarm.k8s.client import JsonObject, Kube


@dataclass(frozen=True)
class ClaimResult:
    name: str
    phase: str
    workspace: str | None
    source: str | None
    seconds: float
    message: str = ""
    reinit: str = ""
    """The Reinitialized condition's reason once final (ReinitSucceeded, ReinitFailed,
    ReinitTimedOut); empty when the workspace has no agent or it was not waited for."""

    @property
    def ok(self) -> bool:
        return self.phase == "Bound" and self.reinit in ("", REASON_REINIT_SUCCEEDED)


def _condition(status: JsonObject, type_: str) -> JsonObject:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


def settled(status: JsonObject) -> bool:
    """Failed, or Bound with nothing left to wait for: no agent (no Reinitialized
    condition), or the agents done or given up (not Unknown, not ReinitRetrying)."""
    if status.get("phase") == "Failed":
        return True
    if status.get("phase") != "Bound":
        return False
    reinit = _condition(status, REINITIALIZED)
    return not reinit or (
        reinit.get("status") != "Unknown" and reinit.get("reason") != REASON_REINIT_RETRYING
    )


def result_of(name: str, status: JsonObject, seconds: float, timeout: float | None) -> ClaimResult:
    """What `prewarm claim --wait` says of the claim's last status (`timeout`: it was cut short)."""
    phase = str(status.get("phase") or "Pending")
    reinit = _condition(status, REINITIALIZED)
    workspace, source = status.get("workspaceName"), status.get("source")
    if phase == "Bound" and reinit:
        if timeout is not None:
            message = f"not Reinitialized within --timeout {timeout:g} s: {reinit.get('message')}"
            return ClaimResult(name, phase, workspace, source, seconds, message, "ReinitPending")
        reason = str(reinit.get("reason", ""))
        message = "" if reinit.get("status") == "True" else f"{reason}: {reinit.get('message')}"
        return ClaimResult(name, phase, workspace, source, seconds, message, reason)
    if timeout is not None and phase != "Bound":
        return ClaimResult(
            name, phase, workspace, source, seconds, f"not Bound within --timeout {timeout:g} s"
        )
    message = str(_condition(status, "Bound").get("message", ""))
    return ClaimResult(name, phase, workspace, source, seconds, message)


_NOT_IN_A_NAME = re.compile(r"[^a-z0-9]+")


def _name_part(text: str, limit: int) -> str:
    return _NOT_IN_A_NAME.sub("-", text.lower())[:limit].strip("-")


def claim_name(preset: str, owner: str, suffix: str) -> str:
    """`<preset>-<owner>-<suffix>` as a DNS-1123 label (at most 63 characters,
    so also a valid value of the prewarm.dev/claim label): whatever an owner
    looks like (`alice@example.com`, `Alice Smith`), only a-z, 0-9 and `-` remain."""
    return "-".join(p for p in (_name_part(preset, 30), _name_part(owner, 24), suffix) if p)


def claim_manifest(
    name: str,
    preset: str,
    owner: str,
    secret: str | None = None,
    options: ClaimOptions | None = None,
) -> JsonObject:
    spec: JsonObject = {"presetRef": {"name": preset}, "owner": owner}
    if secret:
        spec["ownerSecretRef"] = {"name": secret}
    spec.update((options or ClaimOptions()).spec())
    return {
        "apiVersion": API_VERSION,
        "kind": KIND_WORKSPACE_CLAIM,
        "metadata": {"name": name},
        "spec": spec,
    }


async def claim(
    target: Target,
    namespace: str,
    preset: str,
    owner: str,
    secret: str | None,
    wait: bool,
    wait_seconds: float,
    options: ClaimOptions | None = None,
) -> ClaimResult:
    kube = await connect_kube(target)
    try:
        name = claim_name(preset, owner, uuid.uuid4().hex[:6])
        started = time.perf_counter()
        manifest = claim_manifest(name, preset, owner, secret, options)
        created = await kube.create_claim(namespace, manifest)
        if not wait:
            return ClaimResult(name, "Pending", None, None, time.perf_counter() - started)
        last: JsonObject = {}
        try:
            await asyncio.wait_for(
                _until_settled(kube, namespace, name, created["metadata"]["resourceVersion"], last),
                wait_seconds,
            )
        except TimeoutError:
            return result_of(name, last, time.perf_counter() - started, wait_seconds)
        return result_of(name, last, time.perf_counter() - started, None)
    finally:
        await kube.close()


async def _until_settled(
    kube: Kube, namespace: str, name: str, since: str, last: JsonObject
) -> None:
    """Until the claim is `settled`; `last` holds its latest status all along."""
    while True:  # a watch may end (server timeout): start another from where we were
        async for kind, obj in kube.watch_objects(PLURAL_WORKSPACE_CLAIMS, namespace, since):
            since = obj.get("metadata", {}).get("resourceVersion", since)
            if kind == "DELETED" or obj.get("metadata", {}).get("name") != name:
                continue
            last.clear()
            last.update(obj.get("status") or {})
            if settled(last):
                return
