"""The agent's durable state and its pure decision: (state, observation) -> action.

The state file lives on the pod's emptyDir, so it survives agent (container)
restarts for the life of the pod. Every transition is one atomic replace
(write a temporary file, fsync, rename, fsync the directory), so after a crash
the file holds either the old or the new state, never a mix.

Ordering that gives exactly-once per generation:
  1. `started(G)` recorded (the marker) .......... then the hook runs
  2. `completed(G)` recorded ..................... then the pod is patched
  3. `reported(G)` recorded
A crash before 1: G runs normally on restart. Between 1 and 2 (the hook was
running or had just ended): G runs again with PREWARM_REINIT_RESUMED=1 (the
documented at-least-once window). After 2: G never runs again; the report is
repeated (idempotent) if 3 is missing.
Only a generation greater than `done` ever starts a hook: a reconnect, a resync
or a restart that sees the same generation does nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class AgentState:
    done: int = 0
    """The last generation whose hook exited 0 (recorded before reporting)."""
    done_owner: str = ""
    reported: int = 0
    """The last generation whose `reinit-done` annotation was patched successfully."""
    attempt_generation: int = 0
    """The generation of the latest attempt(s)."""
    attempts: int = 0
    """Hook runs started for attempt_generation (counted before each run)."""
    running: bool = False
    """The `started` marker: a hook run began and has not ended (success or failure)."""
    last_error: str = ""

    # --- transitions (pure) ------------------------------------------------------------

    def started(self, generation: int) -> AgentState:
        attempts = self.attempts + 1 if self.attempt_generation == generation else 1
        return replace(
            self, attempt_generation=generation, attempts=attempts, running=True, last_error=""
        )

    def failed(self, generation: int, reason: str, *, interrupted: bool = False) -> AgentState:
        """`interrupted`: the run was cut off, not failed (its outcome is unknown),
        so the marker stays and the next run is told it resumes one."""
        assert generation == self.attempt_generation
        return replace(self, running=interrupted, last_error=reason)

    def completed(self, generation: int, owner: str) -> AgentState:
        assert generation > self.done
        return replace(self, done=generation, done_owner=owner, running=False, last_error="")

    def report_recorded(self, generation: int) -> AgentState:
        return replace(self, reported=max(self.reported, generation))


# --- actions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Idle:
    pass


@dataclass(frozen=True)
class RunHook:
    generation: int
    owner: str
    resumed: bool
    """True when a previous run of this generation was interrupted (not failed)."""
    attempt: int
    """1-based number of the run about to start."""


@dataclass(frozen=True)
class Report:
    generation: int


@dataclass(frozen=True)
class Exhausted:
    """The hook failed `max_attempts` times for this generation: wait for a newer one."""

    generation: int
    reason: str


Action = Idle | RunHook | Report | Exhausted


def decide(
    state: AgentState,
    generation: int | None,
    owner: str = "",
    *,
    pod_reported: int | None = None,
    max_attempts: int = 3,
) -> Action:
    """The next step, from the durable state and the highest generation observed.

    `pod_reported` is the pod's current `reinit-done.<container>` value when the
    API is in use (None when unknown): if the pod lags behind `done`, report again.
    """
    needs_report = state.done > 0 and (
        state.reported < state.done or (pod_reported is not None and pod_reported < state.done)
    )
    if generation is not None and generation > state.done:
        same = state.attempt_generation == generation
        if same and state.attempts >= max_attempts:
            if needs_report:  # the done generation's report is still owed
                return Report(state.done)
            return Exhausted(generation, state.last_error or "interrupted")
        return RunHook(
            generation=generation,
            owner=owner,
            resumed=same and state.running,
            attempt=(state.attempts if same else 0) + 1,
        )
    if needs_report:
        return Report(state.done)
    return Idle()


# --- persistence -------------------------------------------------------------------------


class StateStore:
    """One JSON file per agent container in the state directory."""

    def __init__(self, directory: Path, container: str) -> None:
        self.directory = directory
        self.path = directory / f"state-{container}.json"

    def load(self) -> AgentState:
        try:
            raw: Any = json.loads(self.path.read_text())
        except FileNotFoundError:
            return AgentState()
        known = {f.name for f in fields(AgentState)}
        return AgentState(**{k: v for k, v in dict(raw).items() if k in known})

    def save(self, state: AgentState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.directory)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(asdict(state), out, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
