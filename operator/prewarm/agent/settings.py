"""The agent's settings, all from the environment (set by agent_container())."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prewarm.api.agent_protocol import MAX_AGENT_CONTAINER_NAME, PODINFO_FILE, STATE_DIR

CHECKPOINTS = ("after-hook", "after-record", "after-report")
"""Test-only stops (PREWARM_AGENT_TEST_CHECKPOINT): the agent logs the checkpoint
and blocks there, so a test can SIGKILL it at an exact point."""


class SettingsError(ValueError):
    pass


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"not a boolean: {value!r}")


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} is not a number: {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative")
    return value


@dataclass(frozen=True)
class AgentSettings:
    pod_name: str
    namespace: str
    container: str
    on_claim: list[str]
    podinfo: Path = Path(PODINFO_FILE)
    state_dir: Path = Path(STATE_DIR)
    credentials_root: Path | None = None
    """Where the per-generation credentials directories go (default: TMPDIR)."""
    use_api: bool = True
    poll_seconds: float = 1.0
    max_attempts: int = 3
    backoff_seconds: float = 5.0
    hook_timeout_seconds: float = 600.0
    checkpoint: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AgentSettings:
        missing = [
            n
            for n in ("PREWARM_POD_NAME", "PREWARM_POD_NAMESPACE", "PREWARM_CONTAINER")
            if not env.get(n)
        ]
        if missing:
            raise SettingsError("missing environment: " + ", ".join(missing))
        container = env["PREWARM_CONTAINER"]
        if len(container) > MAX_AGENT_CONTAINER_NAME:
            raise SettingsError(f"PREWARM_CONTAINER longer than {MAX_AGENT_CONTAINER_NAME}")
        try:
            on_claim = json.loads(env.get("PREWARM_ON_CLAIM", ""))
        except ValueError:
            raise SettingsError("PREWARM_ON_CLAIM must be a JSON list of strings") from None
        if (
            not isinstance(on_claim, list)
            or not on_claim
            or not all(isinstance(a, str) for a in on_claim)
        ):
            raise SettingsError("PREWARM_ON_CLAIM must be a non-empty JSON list of strings")
        checkpoint = env.get("PREWARM_AGENT_TEST_CHECKPOINT", "")
        if checkpoint and checkpoint not in CHECKPOINTS:
            raise SettingsError(f"PREWARM_AGENT_TEST_CHECKPOINT must be one of {CHECKPOINTS}")
        root = env.get("PREWARM_CREDENTIALS_ROOT")
        return cls(
            pod_name=env["PREWARM_POD_NAME"],
            namespace=env["PREWARM_POD_NAMESPACE"],
            container=container,
            on_claim=list(on_claim),
            podinfo=Path(env.get("PREWARM_PODINFO") or PODINFO_FILE),
            state_dir=Path(env.get("PREWARM_STATE_DIR") or STATE_DIR),
            credentials_root=Path(root) if root else None,
            use_api=_flag(env.get("PREWARM_AGENT_USE_API"), True),
            poll_seconds=_number(env, "PREWARM_AGENT_POLL_SECONDS", 1.0) or 1.0,
            max_attempts=max(1, int(_number(env, "PREWARM_AGENT_MAX_ATTEMPTS", 3))),
            backoff_seconds=_number(env, "PREWARM_AGENT_BACKOFF_SECONDS", 5.0),
            hook_timeout_seconds=_number(env, "PREWARM_AGENT_HOOK_TIMEOUT_SECONDS", 600.0),
            checkpoint=checkpoint,
        )
