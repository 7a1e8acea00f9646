"""The agent protocol: what operator and in-pod agent agree on. Names only.

The operator writes a workspace's owner and re-init generation on its pod
(`prewarm.dev/owner`, `prewarm.dev/reinit-generation`, in api/constants.py);
each agent reports on the same pod the generation it completed or failed
(annotations below). Paths and volume names are where the operator mounts
what the agent reads, and the names of the per-workspace objects the agent
may touch. Both sides import this module, so the agent imports no planning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from prewarm.api.constants import PREFIX

ANNOTATION_AGENTS: Final = f"{PREFIX}agents"
"""On a Pod: comma-separated names of the containers that run an agent."""
REINIT_DONE_PREFIX: Final = f"{PREFIX}reinit-done."
"""On a Pod, + container name: the last generation that container's agent completed."""
REINIT_FAILED_PREFIX: Final = f"{PREFIX}reinit-failed."
"""On a Pod, + container name: `<generation>: <short reason>` of the last failed hook run;
`<generation>: <short reason> (gave up after N attempts)` once the agent stopped trying."""
REINIT_OUTPUT_PREFIX: Final = f"{PREFIX}reinit-output."
"""On a Pod, + container name: JSON (`HookFailure`) of the last failed hook run: its
generation, attempt, limit, whether it timed out, and the redacted tail of its output."""
GAVE_UP_MARK: Final = " (gave up after "
MAX_OUTPUT_TAIL: Final = 1000
"""Characters of the hook's (redacted) output the agent reports on a failure."""

AGENT_CONTAINER_NAME: Final = "prewarm-agent"
PODINFO_DIR: Final = "/etc/prewarm/podinfo"
PODINFO_FILE: Final = f"{PODINFO_DIR}/annotations"
STATE_DIR: Final = "/var/lib/prewarm-agent"
TOKEN_DIR: Final = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where in-cluster config looks for token, ca.crt and namespace."""
TMP_DIR: Final = "/tmp"
"""A memory-backed emptyDir: the root filesystem is read-only."""
TOKEN_EXPIRATION_SECONDS: Final = 3600
READY_FILE: Final = f"{TMP_DIR}/prewarm-agent-ready"
"""Written by the agent once every one of its agents watches the pod (or, without
the API, has read the podinfo file): the agent container's startup probe, so a
workspace is Ready, and claimable, only when a claim reaches its agent at once."""
REINIT_DIR: Final = "/run/prewarm"
"""In each container the hook runs in (exec): a memory-backed emptyDir where the
hook's credentials and parameters are written, as the container's own user,
under `<REINIT_DIR>/<container>/`."""

VOLUME_PODINFO: Final = "prewarm-podinfo"
VOLUME_STATE: Final = "prewarm-agent-state"
VOLUME_TOKEN: Final = "prewarm-agent-token"
VOLUME_TMP: Final = "prewarm-agent-tmp"
VOLUME_REINIT: Final = "prewarm-reinit"

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


def reinit_output_annotation(container: str) -> str:
    return f"{REINIT_OUTPUT_PREFIX}{container}"


def failed_value(generation: int, reason: str, gave_up_after: int = 0) -> str:
    """The `reinit-failed.<container>` value; `gave_up_after` > 0 once the agent stopped."""
    suffix = f"{GAVE_UP_MARK}{gave_up_after} attempts)" if gave_up_after else ""
    return f"{generation}: {reason}{suffix}"


@dataclass(frozen=True)
class FailedRun:
    """A parsed `reinit-failed.<container>` value."""

    generation: int
    reason: str
    gave_up: bool


def parse_failed(value: str | None) -> FailedRun | None:
    """None for an absent or malformed value."""
    head, sep, rest = (value or "").partition(": ")
    if not sep or not head.isdigit():
        return None
    reason, mark, _ = rest.partition(GAVE_UP_MARK)
    return FailedRun(int(head), reason, bool(mark))


@dataclass(frozen=True)
class HookFailure:
    """The `reinit-output.<container>` value: the details of the last failed run.

    `output` is the tail of the hook's output with every credential value
    replaced by the agent; it never holds a credential."""

    generation: int
    attempt: int
    max_attempts: int
    timed_out: bool
    output: str

    def to_annotation(self) -> str:
        return json.dumps(
            {
                "generation": self.generation,
                "attempt": self.attempt,
                "maxAttempts": self.max_attempts,
                "timedOut": self.timed_out,
                "output": self.output[-MAX_OUTPUT_TAIL:],
            },
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, value: str | None) -> HookFailure | None:
        """None for an absent or malformed value (an agent of another version)."""
        try:
            data = json.loads(value or "")
            return cls(
                int(data["generation"]),
                int(data["attempt"]),
                int(data["maxAttempts"]),
                bool(data["timedOut"]),
                str(data["output"])[-MAX_OUTPUT_TAIL:],
            )
        except (ValueError, TypeError, KeyError):
            return None
