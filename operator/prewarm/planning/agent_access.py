"""What a workspace's agent may touch, and how it is wired into the pod: pure functions.

Every workspace gets its own ServiceAccount, Role and RoleBinding (`<ws>-agent`)
and an owner Secret (`<ws>-owner`), created with the workspace so a claim costs
no extra creates. The Role names exactly one pod and one secret, so the
credentials of one workspace's agent give no power over another workspace.
All four are owned by the PrebuiltWorkspace and collected with it.

The names both sides of the agent protocol use are in api/agent_protocol.py.
"""

from __future__ import annotations

import json
from typing import Any

from prewarm.api.agent_protocol import (
    AGENT_CONTAINER_NAME,
    MAX_AGENT_CONTAINER_NAME,
    PODINFO_DIR,
    PODINFO_FILE,
    READY_FILE,
    REINIT_DIR,
    STATE_DIR,
    TMP_DIR,
    TOKEN_DIR,
    TOKEN_EXPIRATION_SECONDS,
    VOLUME_PODINFO,
    VOLUME_REINIT,
    VOLUME_STATE,
    VOLUME_TMP,
    VOLUME_TOKEN,
    agent_account_name,
    owner_secret_name,
)
from prewarm.api.constants import (
    API_VERSION,
    KIND_PREBUILT_WORKSPACE,
    LABEL_WORKSPACE,
)

JsonObject = dict[str, Any]


def _metadata(namespace: str, name: str, workspace_name: str, workspace_uid: str) -> JsonObject:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {LABEL_WORKSPACE: workspace_name},
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": KIND_PREBUILT_WORKSPACE,
                "name": workspace_name,
                "uid": workspace_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }


def agent_role_rules(workspace_name: str) -> list[JsonObject]:
    """Exactly: its own pod (read, watch, annotate, exec into: the hook runs in the
    workspace's containers) and its own owner secret (read)."""
    return [
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "resourceNames": [workspace_name],
            "verbs": ["get", "watch", "list", "patch"],
        },
        {
            "apiGroups": [""],
            "resources": ["pods/exec"],
            "resourceNames": [workspace_name],
            # A websocket exec is a GET that the API server also checks as create.
            "verbs": ["get", "create"],
        },
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [owner_secret_name(workspace_name)],
            "verbs": ["get"],
        },
    ]


def render_agent_access(
    namespace: str, workspace_name: str, workspace_uid: str
) -> list[JsonObject]:
    """ServiceAccount, Role, RoleBinding and the (empty) owner Secret of one workspace.

    Create them in this order; all are owned by the PrebuiltWorkspace.
    """
    account = agent_account_name(workspace_name)

    def meta(name: str) -> JsonObject:
        return _metadata(namespace, name, workspace_name, workspace_uid)

    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(account),
            # Only the agent container gets a token, through agent_volumes().
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta(account),
            "rules": agent_role_rules(workspace_name),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta(account),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": account,
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta(owner_secret_name(workspace_name)),
            "type": "Opaque",
            "data": {},
        },
    ]


def agent_volumes() -> list[JsonObject]:
    """The volumes agent_container() mounts; add them to the pod once, whatever the agents."""
    return [
        {
            "name": VOLUME_PODINFO,
            "downwardAPI": {
                "items": [
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}
                ]
            },
        },
        {"name": VOLUME_STATE, "emptyDir": {}},
        {"name": VOLUME_TMP, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        # Mounted only in the containers the hook runs in (hook_mount()): the
        # hook's credentials, written there by the container's own user.
        {"name": VOLUME_REINIT, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        {
            "name": VOLUME_TOKEN,
            "projected": {
                "defaultMode": 0o444,
                "sources": [
                    {
                        "serviceAccountToken": {
                            "path": "token",
                            "expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                        }
                    },
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                ],
            },
        },
    ]


def agent_security_context() -> JsonObject:
    """Compatible with the `restricted` Pod Security Standard."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def hook_mount() -> JsonObject:
    """The volume mount every container the hook runs in gets."""
    return {"name": VOLUME_REINIT, "mountPath": REINIT_DIR}


def agent_container(
    image: str,
    container_name: str = AGENT_CONTAINER_NAME,
    *,
    on_claim: list[str],
    exec_containers: list[str] | None = None,
) -> JsonObject:
    """The agent sidecar. The pod's serviceAccountName must be agent_account_name(ws),
    its volumes must include agent_volumes(), and its `prewarm.dev/agents`
    annotation must list `container_name`, or, with `exec_containers` (the hook
    runs in those containers, through exec), those names, each of which mounts
    hook_mount()."""
    if not on_claim:
        raise ValueError("on_claim must name a command")
    if not 0 < len(container_name) <= MAX_AGENT_CONTAINER_NAME:
        raise ValueError(
            f"agent container name {container_name!r} must have 1 to "
            f"{MAX_AGENT_CONTAINER_NAME} characters (it is part of an annotation key)"
        )
    return {
        "name": container_name,
        "image": image,
        "command": ["prewarm", "agent"],
        "env": [
            {"name": "PREWARM_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "PREWARM_POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "PREWARM_CONTAINER", "value": container_name},
            {"name": "PREWARM_PODINFO", "value": PODINFO_FILE},
            {"name": "PREWARM_STATE_DIR", "value": STATE_DIR},
            # `$$` because the kubelet expands `$(VAR)` in env values and turns `$$`
            # into `$`: a hook's `$$` or `$(...)` must reach the agent as written.
            {"name": "PREWARM_ON_CLAIM", "value": json.dumps(on_claim).replace("$", "$$")},
            {"name": "TMPDIR", "value": TMP_DIR},
            {"name": "PREWARM_AGENT_READY_FILE", "value": READY_FILE},
            *(
                [{"name": "PREWARM_AGENT_EXEC_CONTAINERS", "value": ",".join(exec_containers)}]
                if exec_containers
                else []
            ),
        ],
        "volumeMounts": [
            {"name": VOLUME_PODINFO, "mountPath": PODINFO_DIR, "readOnly": True},
            {"name": VOLUME_STATE, "mountPath": STATE_DIR},
            {"name": VOLUME_TMP, "mountPath": TMP_DIR},
            {"name": VOLUME_TOKEN, "mountPath": TOKEN_DIR, "readOnly": True},
        ],
        # Not started (so the pod not Ready, the workspace not warm) until the agent
        # watches its pod: a claim then reaches it at once (docs/agent.md).
        "startupProbe": {
            "exec": {"command": ["cat", READY_FILE]},
            "periodSeconds": 1,
            "failureThreshold": 300,
        },
        "securityContext": agent_security_context(),
        # No limits: without exec_containers the hook runs in this container.
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
    }
