"""Manifests the operator creates, rendered from a preset: pure functions.

A PrebuiltWorkspace is owned by its Preset (so deleting the preset collects
unclaimed ones); its Pod, named like the workspace, is owned by the workspace.
The pod's name being the workspace's makes creating it idempotent: after a
crash between the two creates, the retry gets 409 instead of a second pod.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prewarm.api.agent_protocol import ANNOTATION_AGENTS, agent_account_name
from prewarm.api.constants import (
    ANNOTATION_CLAIM_PARAMETERS,
    ANNOTATION_OWNER,
    ANNOTATION_REINIT_GENERATION,
    API_VERSION,
    KIND_PREBUILT_WORKSPACE,
    KIND_PRESET,
    KIND_WORKSPACE_CLAIM,
    LABEL_CLAIM,
    LABEL_PRESET,
    LABEL_TEMPLATE_HASH,
    LABEL_WORKSPACE,
    PREFIX,
)
from prewarm.api.preset import PodSecurity, PresetSpec
from prewarm.planning.agent_access import agent_container, agent_volumes, hook_mount

ANNOTATION_PARAMETERS = f"{PREFIX}parameters"

JsonObject = dict[str, Any]


def owner_reference(kind: str, name: str, uid: str, api_version: str = API_VERSION) -> JsonObject:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


@dataclass(frozen=True)
class ClaimRef:
    name: str
    uid: str
    owner: str
    rebinds: int = 0  # how often the claim lost its workspace (names its cold build)
    # The claim's resolved parameters (planning.claim_parameters): name, value.
    parameters: tuple[tuple[str, str], ...] = ()


def cold_workspace_name(preset_name: str, claim_uid: str, rebinds: int = 0) -> str:
    """The one name a claim's cold-start workspace can have.

    Derived from the claim's uid, so a second create for the same claim (a pass
    that ran before the watch showed the first, or another replica) gets 409
    instead of building a duplicate: a claim builds at most one workspace per
    binding. After its workspace was lost and it rebinds (`rebinds` > 0) the
    name has that count as a suffix, so the new build never meets the old one.
    """
    base = f"{preset_name[:40].rstrip('-.')}-c{claim_uid.replace('-', '')[:12]}"
    return f"{base}-{rebinds}" if rebinds else base


def render_workspace(
    namespace: str,
    preset_name: str,
    preset_uid: str,
    template_hash: str,
    claim: ClaimRef | None = None,
) -> JsonObject:
    """A pool instance (owned by the preset), or with `claim` a cold start owned by it."""
    labels = {LABEL_PRESET: preset_name, LABEL_TEMPLATE_HASH: template_hash}
    spec: JsonObject = {"presetRef": {"name": preset_name}, "templateHash": template_hash}
    owner = owner_reference(KIND_PRESET, preset_name, preset_uid)
    naming: JsonObject = {"generateName": f"{preset_name[:50]}-"}
    if claim is not None:
        naming = {"name": cold_workspace_name(preset_name, claim.uid, claim.rebinds)}
        labels[LABEL_CLAIM] = claim.name
        spec["owner"] = claim.owner
        spec["claimRef"] = {"name": claim.name, "uid": claim.uid}
        if claim.parameters:
            spec["claimParameters"] = parameter_list(claim.parameters)
        owner = owner_reference(KIND_WORKSPACE_CLAIM, claim.name, claim.uid)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND_PREBUILT_WORKSPACE,
        "metadata": {
            **naming,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": spec,
    }


def parameter_list(parameters: Iterable[tuple[str, str]]) -> list[JsonObject]:
    """Name/value pairs in the wire form of a `parameters` list."""
    return [{"name": k, "value": v} for k, v in parameters]


def claim_annotations(
    owner: str, generation: int, parameters: Iterable[tuple[str, str]] = ()
) -> dict[str, str]:
    """What the in-pod agent watches: who owns the workspace now, which re-init,
    and the claim's parameters (written in the same patch, so the agent never
    sees a generation without them)."""
    annotations = {ANNOTATION_OWNER: owner, ANNOTATION_REINIT_GENERATION: str(generation)}
    values = dict(parameters)
    if values:
        annotations[ANNOTATION_CLAIM_PARAMETERS] = json.dumps(values, sort_keys=True)
    return annotations


def _with_parameters(container: Mapping[str, Any], parameters: Mapping[str, str]) -> JsonObject:
    result = dict(container)
    env = list(result.get("env") or [])
    defined = {e.get("name") for e in env}
    env += [{"name": k, "value": v} for k, v in parameters.items() if k not in defined]
    if env:
        result["env"] = env
    return result


def _setdefaults(target: JsonObject, defaults: Mapping[str, Any]) -> JsonObject:
    result = dict(target)
    for key, value in defaults.items():
        if isinstance(value, Mapping):
            result[key] = _setdefaults(dict(result.get(key) or {}), value)
        else:
            result.setdefault(key, value)
    return result


_RESTRICTED_POD = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
_RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def restricted(pod_spec: JsonObject) -> JsonObject:
    """The restricted Pod Security Standard, filled in where the template is silent.

    What the template sets explicitly stays: if that breaks the standard, the
    API server says so (a namespace enforcing it rejects the pod) and the
    preset becomes ValidationFailed with that message.
    """
    result = dict(pod_spec)
    result["securityContext"] = _setdefaults(
        dict(result.get("securityContext") or {}), _RESTRICTED_POD
    )
    for kind in ("initContainers", "containers"):
        if kind in result:
            result[kind] = [
                {
                    **c,
                    "securityContext": _setdefaults(
                        dict(c.get("securityContext") or {}), _RESTRICTED_CONTAINER
                    ),
                }
                for c in result[kind]
            ]
    return result


def _pod_spec(
    spec: PresetSpec,
    parameters: Mapping[str, str],
    workspace_name: str,
    workspace_uid: str | None,
    agent_image: str,
) -> tuple[JsonObject, list[str]]:
    """The pod's spec, and the names of its containers that run an agent."""
    pod_spec: JsonObject = copy.deepcopy(
        spec.template.spec.model_dump(by_alias=True, exclude_none=True)
    )
    pod_spec["containers"] = [_with_parameters(c, parameters) for c in pod_spec["containers"]]
    agents = [
        c["name"]
        for c in pod_spec["containers"]
        if any(
            e.get("name") == "PREWARM_AGENT" and e.get("value") == "true"
            for e in c.get("env") or []
        )
    ]
    if spec.agent.on_claim:
        # The sidecar runs the preset's hook, through the exec subresource, in each
        # of the hook's containers, with the workspace's own, narrow ServiceAccount
        # (planning/agent_access.py); no other container gets a token. Each target
        # reports under its own name.
        targets = spec.hook_containers()
        pod_spec["containers"] = [
            {**c, "volumeMounts": [*(c.get("volumeMounts") or []), hook_mount()]}
            if c["name"] in targets
            else c
            for c in pod_spec["containers"]
        ]
        pod_spec["containers"].append(
            agent_container(
                spec.agent.image or agent_image,
                on_claim=spec.agent.on_claim,
                exec_containers=targets,
            )
        )
        pod_spec["volumes"] = [*(pod_spec.get("volumes") or []), *agent_volumes()]
        pod_spec["automountServiceAccountToken"] = False
        if workspace_uid:  # a dry-run has no ServiceAccount of its own yet
            pod_spec["serviceAccountName"] = agent_account_name(workspace_name)
        agents += [t for t in targets if t not in agents]
    if spec.pod_security is PodSecurity.RESTRICTED:
        pod_spec = restricted(pod_spec)
    return pod_spec, agents


def render_pod(
    spec: PresetSpec,
    namespace: str,
    preset_name: str,
    template_hash: str,
    workspace_name: str,
    workspace_uid: str | None,
    claim: ClaimRef | None = None,
    agent_image: str = "",
) -> JsonObject:
    """The workspace's pod. Without a workspace uid (a dry-run) it has no owner.

    A cold start's pod is born claimed: generation 1 for its owner from the start.
    """
    template = spec.template
    parameters = {p.name: p.value for p in spec.parameters}
    pod_spec, agents = _pod_spec(spec, parameters, workspace_name, workspace_uid, agent_image)
    labels = {
        **template.metadata.labels,
        LABEL_PRESET: preset_name,
        LABEL_TEMPLATE_HASH: template_hash,
        LABEL_WORKSPACE: workspace_name,
    }
    annotations = dict(template.metadata.annotations)
    if parameters:
        annotations[ANNOTATION_PARAMETERS] = json.dumps(parameters, sort_keys=True)
    if agents:
        annotations[ANNOTATION_AGENTS] = ",".join(agents)
    if claim is not None:
        labels[LABEL_CLAIM] = claim.name
        annotations.update(claim_annotations(claim.owner, 1, claim.parameters))
    metadata: JsonObject = {
        "name": workspace_name,
        "namespace": namespace,
        "labels": labels,
        "annotations": annotations,
    }
    if workspace_uid:
        metadata["ownerReferences"] = [
            owner_reference(KIND_PREBUILT_WORKSPACE, workspace_name, workspace_uid)
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}
