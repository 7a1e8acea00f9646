"""What a Bound claim's `Reinitialized` condition says, from its pod's agent annotations: pure.

Each agent reports on the pod (api/agent_protocol.py): the generation it
completed, or the generation it failed with a short reason (`gave up after N
attempts` once it stopped trying) and the details of that run (attempt,
timeout, the redacted tail of the hook's output). The claim shows:

| agents | status | reason |
|---|---|---|
| every agent completed the claim's generation | True | ReinitSucceeded |
| one gave up (the last run timed out / failed) | False | ReinitTimedOut / ReinitFailed |
| one failed and will try again | False | ReinitRetrying |
| otherwise (running, not started) | Unknown | ReinitPending |

A failure is a Warning Event and `prewarm_claim_reinit_failures_total` each
time the condition changes to it (one per failed attempt the operator sees).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prewarm.api import reasons
from prewarm.api.agent_protocol import (
    ANNOTATION_AGENTS,
    HookFailure,
    parse_failed,
    reinit_done_annotation,
    reinit_failed_annotation,
    reinit_output_annotation,
)

# What happens after an agent gave up, said on the claim (docs/agent.md, "Failures").
AFTER_GIVING_UP = (
    "the workspace stays bound to this claim as the hook left it; "
    "delete the claim to release it (its workspace is deleted, never reused)"
)
MAX_EVENT_OUTPUT = 300


@dataclass(frozen=True)
class AgentFailure:
    container: str
    reason: str
    gave_up: bool
    timed_out: bool
    attempt: int = 0
    max_attempts: int = 0
    output: str = ""


@dataclass(frozen=True)
class ReinitProgress:
    agents: tuple[str, ...]
    done: tuple[str, ...]
    failures: tuple[AgentFailure, ...]


def pod_agents(annotations: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(a for a in annotations.get(ANNOTATION_AGENTS, "").split(",") if a)


def _as_int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _failure(annotations: Mapping[str, str], agent: str, generation: int) -> AgentFailure | None:
    failed = parse_failed(annotations.get(reinit_failed_annotation(agent)))
    if failed is None or failed.generation != generation:
        return None  # an older generation's failure says nothing about this claim
    details = HookFailure.parse(annotations.get(reinit_output_annotation(agent)))
    if details is None or details.generation != generation:
        timed_out = failed.reason.startswith("timed out")
        return AgentFailure(agent, failed.reason, failed.gave_up, timed_out)
    return AgentFailure(
        agent,
        failed.reason,
        failed.gave_up,
        details.timed_out,
        details.attempt,
        details.max_attempts,
        details.output,
    )


def reinit_progress(annotations: Mapping[str, str], generation: int) -> ReinitProgress | None:
    """Where the pod's agents are with `generation`; None if the pod has no agent."""
    agents = pod_agents(annotations)
    if not agents:
        return None
    done = tuple(
        a for a in agents if _as_int(annotations.get(reinit_done_annotation(a))) >= generation
    )
    failures = tuple(
        f
        for a in agents
        if a not in done and (f := _failure(annotations, a, generation)) is not None
    )
    return ReinitProgress(agents, done, failures)


@dataclass(frozen=True)
class ReinitCondition:
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str
    event: str = ""
    """The Warning Event's message for a failure (a shorter tail); empty otherwise."""

    @property
    def failed(self) -> bool:
        return self.status == "False"

    @property
    def final(self) -> bool:
        """Nothing will change it but a new claim: Succeeded, Failed or TimedOut."""
        return self.reason != reasons.REASON_REINIT_RETRYING and self.status != "Unknown"


def _what_failed(f: AgentFailure) -> str:
    attempt = f" (attempt {f.attempt} of {f.max_attempts})" if f.attempt else ""
    if f.gave_up:
        return f"agent {f.container}: {f.reason}{attempt}; gave up: {AFTER_GIVING_UP}"
    return f"agent {f.container}: {f.reason}{attempt}; it will try again"


def _with_output(text: str, output: str, limit: int) -> str:
    if not output:
        return text
    tail = output[-limit:]
    return f"{text}. Output (last lines, credentials redacted):\n{tail}"


def reinit_condition(progress: ReinitProgress, generation: int) -> ReinitCondition:
    """The claim's Reinitialized condition for `generation`."""
    total = len(progress.agents)
    if len(progress.done) == total:
        return ReinitCondition(
            "True",
            reasons.REASON_REINIT_SUCCEEDED,
            f"{total} agent(s) re-initialised for generation {generation}",
        )
    if progress.failures:
        # A final failure first: it is what the user must act on.
        first = sorted(progress.failures, key=lambda f: not f.gave_up)[0]
        if not first.gave_up:
            reason = reasons.REASON_REINIT_RETRYING
        elif first.timed_out:
            reason = reasons.REASON_REINIT_TIMED_OUT
        else:
            reason = reasons.REASON_REINIT_FAILED
        what = _what_failed(first)
        return ReinitCondition(
            "False",
            reason,
            _with_output(what, first.output, len(first.output)),
            _with_output(what, first.output, MAX_EVENT_OUTPUT),
        )
    return reinit_pending(progress.agents, generation, progress.done)


def reinit_pending(
    agents: tuple[str, ...], generation: int, done: tuple[str, ...] = ()
) -> ReinitCondition:
    """Unknown while agents work; also what a claim says the moment it is Bound."""
    waiting = ", ".join(a for a in agents if a not in done)
    return ReinitCondition(
        "Unknown",
        reasons.REASON_REINIT_PENDING,
        f"waiting for {len(agents) - len(done)} of {len(agents)} agent(s) "
        f"to re-initialise for generation {generation}: {waiting}",
    )
