"""One log shape for the operator and the agent (issue 18): JSON with object fields."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

from prewarm.agent.logs import JsonLog
from prewarm.logs import JsonFormatter, log_context

ENVELOPE = ["ts", "level", "logger", "message"]


def _operator_records(emit: Any) -> list[dict[str, Any]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("prewarm.test-logs")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_issue18_a_pass_logs_its_preset_and_claim_as_json_fields() -> None:
    def emit(logger: logging.Logger) -> None:
        with log_context(namespace="team-a", preset="python"):
            logger.info("deleted prebuild %s", "python-x7k2p", extra={"workspace": "python-x7k2p"})
        with log_context(namespace="team-a", claim="python-alice-1a2b3c"):
            logger.warning("claim waits")
        logger.info("outside any pass")

    first, second, third = _operator_records(emit)
    assert list(first)[:4] == ENVELOPE
    assert first["level"] == "info"
    assert first["logger"] == "prewarm.test-logs"
    assert first["message"] == "deleted prebuild python-x7k2p"
    assert (first["namespace"], first["preset"], first["workspace"]) == (
        "team-a",
        "python",
        "python-x7k2p",
    )
    assert "claim" not in first
    assert (second["level"], second["claim"]) == ("warning", "python-alice-1a2b3c")
    assert "preset" not in second
    assert set(third) == set(ENVELOPE)


def test_issue18_the_context_follows_tasks_and_does_not_leak_between_them() -> None:
    async def scenario(logger: logging.Logger) -> None:
        async def one(preset: str) -> None:
            with log_context(namespace="ns", preset=preset):
                await asyncio.sleep(0)
                logger.info("pass")

        await asyncio.gather(one("a"), one("b"))

    records = _operator_records(lambda logger: asyncio.run(scenario(logger)))
    assert sorted(r["preset"] for r in records) == ["a", "b"]


def test_issue18_kopf_object_records_name_the_object_and_errors_carry_the_traceback() -> None:
    def emit(logger: logging.Logger) -> None:
        ref = {"kind": "WorkspaceClaim", "namespace": "team-a", "name": "c1", "uid": "u"}
        logger.info("handler done", extra={"k8s_ref": ref, "k8s_skip": False})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")

    kopf_record, error = _operator_records(emit)
    assert (kopf_record["namespace"], kopf_record["claim"]) == ("team-a", "c1")
    assert "k8s_ref" not in kopf_record
    assert "k8s_skip" not in kopf_record
    assert error["level"] == "error"
    assert "ValueError: boom" in error["exc"]


def test_issue18_the_agent_writes_the_same_shape() -> None:
    stream = io.StringIO()
    log = JsonLog(stream, namespace="team-a", workspace="python-x7k2p", pod="python-x7k2p")
    log.info("hook_succeeded", generation=2, seconds=0.5)
    (record,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert list(record)[:6] == [*ENVELOPE, "namespace", "workspace"]
    assert record["logger"] == "prewarm.agent"
    assert record["message"] == record["event"] == "hook_succeeded"
    assert record["generation"] == 2

    def emit(logger: logging.Logger) -> None:
        with log_context(namespace="team-a", workspace="python-x7k2p"):
            logger.info("x")

    (operator_record,) = _operator_records(emit)
    assert list(operator_record)[:6] == list(record)[:6]
