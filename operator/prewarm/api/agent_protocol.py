"""The agent protocol: what operator and in-pod agent agree on. Names only.

The operator writes a workspace's owner and re-init generation on its pod
(`prewarm.dev/owner`, `prewarm.dev/reinit-generation`, in api/constants.py);
each agent reports on the same pod the generation it completed or failed
(annotations below). Paths and volume names are where the operator mounts
what the agent reads, and the names of the per-workspace objects the agent
may touch. Both sides import this module, so the agent imports no planning.
"""

from __future__ import annotations

from typing import Final

from prewarm.api.constants import PREFIX

ANNOTATION_AGENTS: Final = f"{PREFIX}agents"
"""On a Pod: comma-separated names of the containers that run an agent."""
REINIT_DONE_PREFIX: Final = f"{PREFIX}reinit-done."
"""On a Pod, + container name: the last generation that container's agent completed."""
REINIT_FAILED_PREFIX: Final = f"{PREFIX}reinit-failed."
"""On a Pod, + container name: `<generation>: <short reason>` of the last failed hook run."""

AGENT_CONTAINER_NAME: Final = "prewarm-agent"
PODINFO_DIR: Final = "/etc/prewarm/podinfo"
PODINFO_FILE: Final = f"{PODINFO_DIR}/annotations"
STATE_DIR: Final = "/var/lib/prewarm-agent"
TOKEN_DIR: Final = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where in-cluster config looks for token, ca.crt and namespace."""
TMP_DIR: Final = "/tmp"
"""A memory-backed emptyDir: the root filesystem is read-only."""
TOKEN_EXPIRATION_SECONDS: Final = 3600

VOLUME_PODINFO: Final = "prewarm-podinfo"
VOLUME_STATE: Final = "prewarm-agent-state"
VOLUME_TOKEN: Final = "prewarm-agent-token"
VOLUME_TMP: Final = "prewarm-agent-tmp"

# An annotation key's name part is at most 63 characters; the longest one the
# agent writes is "reinit-failed.<container>".
MAX_AGENT_CONTAINER_NAME: Final = 63 - len(REINIT_FAILED_PREFIX.removeprefix(PREFIX))


def agent_account_name(workspace_name: str) -> str:
    """ServiceAccount, Role and RoleBinding of one workspace's agent."""
    return f"{workspace_name}-agent"


def owner_secret_name(workspace_name: str) -> str:
    """The Secret that carries the current owner's credentials to the agent."""
    return f"{workspace_name}-owner"


def reinit_done_annotation(container: str) -> str:
    return f"{REINIT_DONE_PREFIX}{container}"


def reinit_failed_annotation(container: str) -> str:
    return f"{REINIT_FAILED_PREFIX}{container}"
