"""The first event handler marks the indexes complete, once, and says how much
they hold: the line the restart benchmark times (bench/restart.py)."""

from __future__ import annotations

import logging

import pytest

from prewarm.handlers import registrations
from prewarm.handlers.runtime import Runtime
from prewarm.settings import Settings


def test_the_first_wake_marks_the_picture_complete_and_logs_its_size_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt = Runtime(settings=Settings(), kube=None, ledger=None)  # type: ignore[arg-type]
    rt.presets = {("ns", "p"): ["preset"]}
    rt.workspaces = {("ns", "p"): ["w1", "w2"], ("ns", "q"): ["w3"]}
    rt.pods = {("ns", "w1"): ["pod"], ("ns", "w2"): ["pod"]}
    rt.claims = {}
    with caplog.at_level(logging.INFO, logger="prewarm.operator"):
        registrations._mark_indexed(rt)
        registrations._mark_indexed(rt)
    assert rt.indexed.is_set()
    lines = [r.getMessage() for r in caplog.records if "indexes complete" in r.getMessage()]
    assert lines == ["indexes complete: 1 presets, 3 workspaces, 2 pods, 0 claims"]
