"""`prewarm claim --preset P --owner O [--param K=V ...] [--wait]`: ask for a
workspace, say how long it took. The spec flags are in commands/claim_flags.py."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass

from prewarm.api.constants import API_VERSION, KIND_WORKSPACE_CLAIM, PLURAL_WORKSPACE_CLAIMS
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
        try:
            status = await asyncio.wait_for(
                _until_settled(kube, namespace, name, created["metadata"]["resourceVersion"]),
                wait_seconds,
            )
        except TimeoutError:
            return ClaimResult(
                name,
                "Pending",
                None,
                None,
                time.perf_counter() - started,
                f"not Bound within --timeout {wait_seconds:g} s",
            )
        bound: JsonObject = next(
            (c for c in status.get("conditions", []) if c.get("type") == "Bound"), {}
        )
        return ClaimResult(
            name,
            str(status.get("phase")),
            status.get("workspaceName"),
            status.get("source"),
            time.perf_counter() - started,
            str(bound.get("message", "")),
        )
    finally:
        await kube.close()


async def _until_settled(kube: Kube, namespace: str, name: str, since: str) -> JsonObject:
    while True:  # a watch may end (server timeout): start another from where we were
        async for kind, obj in kube.watch_objects(PLURAL_WORKSPACE_CLAIMS, namespace, since):
            since = obj.get("metadata", {}).get("resourceVersion", since)
            if kind == "DELETED" or obj.get("metadata", {}).get("name") != name:
                continue
            status = dict(obj.get("status") or {})
            if status.get("phase") in ("Bound", "Failed"):
                return status
