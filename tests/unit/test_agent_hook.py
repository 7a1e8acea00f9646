"""Issue 17: a failed hook run reports the redacted tail of its output; the CLI waits
for the agents and says why it failed."""

from __future__ import annotations

import asyncio
import io

from prewarm.agent.hook import HookResult, OutputTail, Redactor, run_hook
from prewarm.agent.logs import JsonLog
from prewarm.api.agent_protocol import MAX_OUTPUT_TAIL
from prewarm.commands.claim import result_of, settled

SECRET = "hunter2-very-secret"


def _run(script: str, time_limit: float = 30) -> tuple[HookResult, str]:
    out = io.StringIO()
    result = asyncio.run(
        run_hook(
            ["/bin/sh", "-c", script],
            {"PATH": "/usr/bin:/bin"},
            Redactor({"token": SECRET.encode()}),
            JsonLog(out),
            time_limit,
        )
    )
    return result, out.getvalue()


def test_a_failing_hook_reports_the_redacted_tail_of_its_output() -> None:
    script = f"for i in $(seq 1 300); do echo line $i; done; echo 'token is {SECRET}'; exit 7"
    result, logs = _run(script)
    assert result.ok is False
    assert result.reason == "exit status 7"
    assert result.timed_out is False
    output = result.output
    assert output.endswith("line 300\ntoken is [REDACTED]")
    assert "line 1\n" not in output  # only the tail
    assert len(output) <= MAX_OUTPUT_TAIL
    assert SECRET not in output
    assert SECRET not in logs


def test_a_timed_out_hook_says_so_with_what_it_printed() -> None:
    result, _ = _run(f"echo 'waiting with {SECRET}'; sleep 30", time_limit=0.5)
    assert result.reason == "timed out after 0.5s"
    assert result.timed_out is True
    assert result.output == "waiting with [REDACTED]"


def test_a_successful_hook_reports_nothing() -> None:
    result, _ = _run("echo fine")
    assert result.ok is True
    assert result.output == ""


def test_the_tail_keeps_whole_last_lines_within_its_limit() -> None:
    tail = OutputTail()
    for i in range(100):
        tail.add(f"{i:03d}" + "x" * 46)  # 50 characters a line
    text = tail.text()
    assert len(text) <= MAX_OUTPUT_TAIL
    assert text.splitlines()[-1].startswith("099")
    assert text.splitlines()[0].startswith("08")  # whole lines: 20 of 50 characters fit
    one = OutputTail()
    one.add("z" * 5000)
    assert one.text() == "z" * MAX_OUTPUT_TAIL


def _status(phase: str, reinit: tuple[str, str, str] | None = None) -> dict[str, object]:
    conditions: list[dict[str, str]] = [{"type": "Bound", "status": "True", "message": "ok"}]
    if reinit:
        status, reason, message = reinit
        conditions.append(
            {"type": "Reinitialized", "status": status, "reason": reason, "message": message}
        )
    return {"phase": phase, "workspaceName": "ws", "source": "prebuilt", "conditions": conditions}


def test_claim_wait_waits_for_the_agents_and_fails_when_they_gave_up() -> None:
    assert not settled(_status("Pending"))
    assert settled(_status("Failed"))
    assert settled(_status("Bound"))  # no agent: Bound is the end
    assert not settled(_status("Bound", ("Unknown", "ReinitPending", "waiting")))
    assert not settled(_status("Bound", ("False", "ReinitRetrying", "exit status 1")))
    done = _status("Bound", ("True", "ReinitSucceeded", "1 agent(s)"))
    assert settled(done)
    assert result_of("c", done, 1.0, None).ok
    gave_up = _status("Bound", ("False", "ReinitFailed", "agent a: exit status 1; gave up"))
    assert settled(gave_up)
    result = result_of("c", gave_up, 1.0, None)
    assert not result.ok
    assert result.message == "ReinitFailed: agent a: exit status 1; gave up"
    assert not result_of("c", _status("Bound", ("False", "ReinitTimedOut", "t")), 1, None).ok
    assert result_of("c", _status("Bound"), 1.0, None).ok


def test_claim_wait_timeouts_say_what_was_missing() -> None:
    pending = result_of("c", _status("Bound", ("Unknown", "ReinitPending", "waiting for 1")), 2, 5)
    assert not pending.ok
    assert pending.message == "not Reinitialized within --timeout 5 s: waiting for 1"
    unbound = result_of("c", {}, 2, 5)
    assert (unbound.phase, unbound.ok) == ("Pending", False)
    assert unbound.message == "not Bound within --timeout 5 s"
