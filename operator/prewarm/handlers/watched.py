"""What the operator keeps in memory of each watched object (its indexes).

Small frozen records instead of whole bodies: 5000 workspaces must fit in a
few MiB, and the planner needs only these fields.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from prewarm.api.claim import OnWorkspaceLost
from prewarm.api.constants import LABEL_CLAIM, LABEL_PRESET, PREFIX
from prewarm.api.durations import parse_duration
from prewarm.api.preset import Parameter
from prewarm.api.timestamps import parse_time
from prewarm.api.workspace import PrebuiltWorkspace, WorkspacePhase
from prewarm.planning.claims import Held, held
from prewarm.planning.failures import PodView, pod_view
from prewarm.planning.membership import Controller, controller_of
from prewarm.planning.pool import Instance

PresetKey = tuple[str, str]  # (namespace, preset name)


@dataclass(frozen=True)
class WorkspaceEntry:
    namespace: str
    name: str
    uid: str
    resource_version: str
    preset: str
    template_hash: str
    owner: str
    phase: WorkspacePhase
    created_at: datetime
    ready_at: datetime | None
    failed_at: datetime | None
    failure_reason: str | None
    deleting: bool
    failure_message: str = ""
    claim: str = ""
    reinit_generation: int = 0
    # Who made it and still controls it (planning/membership.py decides whether
    # the operator trusts it): its controller ownerReference, its claimRef's uid.
    controller: Controller | None = None
    claim_uid: str = ""
    waiting_reason: str = ""  # what a Building workspace waits for, as last written
    # The claim's resolved parameters it was taken or built with (spec.claimParameters).
    claim_parameters: tuple[tuple[str, str], ...] = ()

    @property
    def claimed(self) -> bool:
        return bool(self.owner) or self.phase is WorkspacePhase.CLAIMED

    def held_for(self, claim_uid: str) -> Held:
        """Whose this workspace is, for the Bound claim `claim_uid` that names it."""
        ready = self.phase is WorkspacePhase.READY
        return held(claim_uid, self.deleting, self.claim_uid, self.claimed, ready)

    def as_instance(self) -> Instance:
        return Instance(
            name=self.name,
            template_hash=self.template_hash,
            phase=self.phase,
            created_at=self.created_at,
            ready_at=self.ready_at,
            failed_at=self.failed_at,
            claimed=self.claimed,
            deleting=self.deleting,
            waiting=self.waiting_reason if self.phase is WorkspacePhase.BUILDING else "",
        )

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> WorkspaceEntry:
        """Read through the API model (api.workspace), the one codec of the wire form."""
        ws = PrebuiltWorkspace.model_validate(body)
        meta, spec, status = ws.metadata, ws.spec, ws.status
        failure = status.failure
        return cls(
            namespace=meta.namespace or "",
            name=meta.name or "",
            uid=meta.uid or "",
            resource_version=meta.resource_version or "",
            preset=spec.preset_ref.name,
            template_hash=spec.template_hash,
            owner=spec.owner,
            phase=status.phase or WorkspacePhase.PENDING,
            created_at=meta.creation_timestamp or datetime.now(UTC),
            ready_at=status.ready_at,
            failed_at=status.failed_at,
            failure_reason=failure.reason if failure else None,
            failure_message=failure.message if failure else "",
            deleting=meta.deletion_timestamp is not None,
            claim=spec.claim_ref.name if spec.claim_ref else "",
            reinit_generation=status.reinit_generation,
            controller=controller_of((body.get("metadata") or {}).get("ownerReferences")),
            claim_uid=spec.claim_ref.uid if spec.claim_ref else "",
            waiting_reason=status.waiting.reason if status.waiting else "",
            claim_parameters=tuple((p.name, p.value) for p in spec.claim_parameters),
        )


@dataclass(frozen=True)
class PodEntry:
    namespace: str
    name: str
    preset: str
    view: PodView
    deleting: bool
    annotations: Mapping[str, str] = field(default_factory=dict)
    # The uid of its controller (its PrebuiltWorkspace, when the operator made it).
    controller_uid: str = ""
    claim: str = ""  # its claim label: whose claim to wake when it changes

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PodEntry:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            preset=str(labels.get(LABEL_PRESET, "")),
            claim=str(labels.get(LABEL_CLAIM, "")),
            view=pod_view(body),
            deleting=meta.get("deletionTimestamp") is not None,
            # Only ours: the agent protocol lives under the prefix.
            annotations={
                k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith(PREFIX)
            },
            controller_uid=controller.uid
            if (controller := controller_of(meta.get("ownerReferences")))
            else "",
        )


@dataclass(frozen=True)
class PresetEntry:
    namespace: str
    name: str
    uid: str
    generation: int
    annotations: Mapping[str, str]
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    deleting: bool
    resource_version: str = ""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PresetEntry:
        meta = body.get("metadata") or {}
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation") or 0),
            annotations=dict(meta.get("annotations") or {}),
            spec=dict(body.get("spec") or {}),
            status=dict(body.get("status") or {}),
            deleting=meta.get("deletionTimestamp") is not None,
            resource_version=str(meta.get("resourceVersion", "")),
        )


@dataclass(frozen=True)
class ClaimEntry:
    namespace: str
    name: str
    uid: str
    preset: str
    owner: str
    owner_secret: str | None
    status: Mapping[str, Any]
    deleting: bool
    created_at: datetime | None = None
    # After Bound (spec.onWorkspaceLost, spec.lifetime, spec.shutdownAt) and
    # how it binds (spec.fresh, spec.coldStartGrace: None uses the preset's).
    on_workspace_lost: OnWorkspaceLost = OnWorkspaceLost.REBIND
    lifetime: timedelta | None = None
    shutdown_at: datetime | None = None
    fresh: bool = False
    cold_start_grace: timedelta | None = None
    # spec.parameters as written (checked against the preset in each pass).
    parameters: tuple[Parameter, ...] = ()

    @property
    def claim(self) -> str:
        """Whose claim to wake when it changes: its own (handlers/object_index.py)."""
        return self.name

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ClaimEntry:
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        secret = (spec.get("ownerSecretRef") or {}).get("name")
        policy = spec.get("onWorkspaceLost")
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            preset=str((spec.get("presetRef") or {}).get("name", "")),
            owner=str(spec.get("owner", "")),
            owner_secret=str(secret) if secret else None,
            status=dict(body.get("status") or {}),
            deleting=meta.get("deletionTimestamp") is not None,
            created_at=parse_time(meta.get("creationTimestamp")),
            on_workspace_lost=OnWorkspaceLost(policy)
            if policy in tuple(OnWorkspaceLost)
            else OnWorkspaceLost.REBIND,
            lifetime=_duration(spec.get("lifetime")),
            shutdown_at=parse_time(spec.get("shutdownAt")),
            fresh=spec.get("fresh") is True,
            cold_start_grace=_duration(spec.get("coldStartGrace")),
            parameters=_parameters(spec.get("parameters")),
        )


def _parameters(items: Any) -> tuple[Parameter, ...]:
    """spec.parameters; an item the CRD should have refused is skipped, not fatal."""
    if not isinstance(items, list):
        return ()
    result = []
    for item in items:
        with contextlib.suppress(ValidationError):
            result.append(Parameter.model_validate(item))
    return tuple(result)


def _duration(text: Any) -> timedelta | None:
    """A duration the CRD's pattern let through; None if absent (or, defensively, invalid)."""
    if not isinstance(text, str):
        return None
    try:
        return parse_duration(text)
    except ValueError:
        return None
