"""The agent's settings, all from the environment (set by agent_container())."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, Json, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from prewarm.api.agent_protocol import (
    MAX_AGENT_CONTAINER_NAME,
    PODINFO_FILE,
    REINIT_DIR,
    STATE_DIR,
)


class SettingsError(ValueError):
    pass


_Seconds = Annotated[float, Field(ge=0)]


class AgentSettings(BaseSettings):
    """Validated with pydantic like the operator's settings; the names are the
    environment variables agent_container() sets. An empty value counts as unset."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    pod_name: str = Field(validation_alias="PREWARM_POD_NAME", min_length=1)
    namespace: str = Field(validation_alias="PREWARM_POD_NAMESPACE", min_length=1)
    container: str = Field(
        validation_alias="PREWARM_CONTAINER", min_length=1, max_length=MAX_AGENT_CONTAINER_NAME
    )
    on_claim: Json[list[str]] = Field(validation_alias="PREWARM_ON_CLAIM", min_length=1)
    exec_containers: str = Field(default="", validation_alias="PREWARM_AGENT_EXEC_CONTAINERS")
    """Comma-separated: the containers of the pod the hook runs in, through the exec
    subresource, each re-initialised once per generation and reporting under its
    own name. Empty: the hook runs in the agent's own container (PREWARM_CONTAINER).
    (A string, not a list: pydantic-settings would read a list from the process
    environment as JSON.)"""
    exec_container: str = ""
    """Set per target by `for_targets()`: the container this agent instance execs into."""
    reinit_dir: str = Field(default=REINIT_DIR, validation_alias="PREWARM_REINIT_DIR")
    """In a target container: where the hook's credentials go (`<dir>/<container>/`)."""
    ready_file: str = Field(default="", validation_alias="PREWARM_AGENT_READY_FILE")
    """Touched once every agent watches its pod (the container's startup probe)."""
    podinfo: Path = Field(default=Path(PODINFO_FILE), validation_alias="PREWARM_PODINFO")
    state_dir: Path = Field(default=Path(STATE_DIR), validation_alias="PREWARM_STATE_DIR")
    credentials_root: Path | None = Field(default=None, validation_alias="PREWARM_CREDENTIALS_ROOT")
    """Where the per-generation credentials directories go (default: TMPDIR)."""
    use_api: bool = Field(default=True, validation_alias="PREWARM_AGENT_USE_API")
    poll_seconds: _Seconds = Field(default=1.0, validation_alias="PREWARM_AGENT_POLL_SECONDS")
    max_attempts: int = Field(default=3, validation_alias="PREWARM_AGENT_MAX_ATTEMPTS")
    backoff_seconds: _Seconds = Field(default=5.0, validation_alias="PREWARM_AGENT_BACKOFF_SECONDS")
    hook_timeout_seconds: _Seconds = Field(
        default=600.0, validation_alias="PREWARM_AGENT_HOOK_TIMEOUT_SECONDS"
    )
    checkpoint: Literal["", "after-hook", "after-record", "after-report"] = Field(
        default="", validation_alias="PREWARM_AGENT_TEST_CHECKPOINT"
    )
    """Test-only stops: the agent logs the checkpoint and blocks there, so a
    test can SIGKILL it at an exact point."""
    kubeconfig: str | None = Field(default=None, validation_alias="KUBECONFIG")
    """Wins over the pod's service account (tests run the agent outside pods)."""
    in_cluster: bool = Field(default=False, validation_alias="KUBERNETES_SERVICE_HOST")
    """KUBERNETES_SERVICE_HOST is set: the agent runs in a pod."""

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, values: Any) -> Any:
        if isinstance(values, Mapping):
            return {k: v for k, v in values.items() if not (isinstance(v, str) and not v.strip())}
        return values

    @field_validator("in_cluster", mode="before")
    @classmethod
    def _host_set(cls, value: Any) -> Any:
        return bool(value) if isinstance(value, str) else value

    @field_validator("exec_containers")
    @classmethod
    def _names_fit_annotation_keys(cls, value: str) -> str:
        for name in value.split(","):
            if len(name.strip()) > MAX_AGENT_CONTAINER_NAME:
                raise ValueError(
                    f"container name {name.strip()!r} is longer than "
                    f"{MAX_AGENT_CONTAINER_NAME} characters"
                )
        return value

    def for_targets(self) -> list[AgentSettings]:
        """One agent per container the hook runs in: each with its own state file
        and annotations (under the target's name); or just this one (local hook)."""
        names = [n.strip() for n in self.exec_containers.split(",") if n.strip()]
        if not names:
            return [self]
        return [
            self.model_copy(update={"container": name, "exec_container": name})
            for name in dict.fromkeys(names)
        ]

    @field_validator("max_attempts", mode="before")
    @classmethod
    def _at_least_one(cls, value: Any) -> Any:
        return max(1, int(float(value))) if isinstance(value, str | int | float) else value

    @field_validator("poll_seconds")
    @classmethod
    def _zero_polls_at_the_default(cls, value: float) -> float:
        return value or 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AgentSettings:
        """From `env` (the process environment in production); SettingsError names the variable."""
        try:
            return cls.model_validate(dict(env))
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            raise SettingsError(problems) from None
