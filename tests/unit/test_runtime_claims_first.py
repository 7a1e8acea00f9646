"""Claims first, bounded: a preset's pass and its creates give way to claims in
flight for at most CLAIMS_FIRST_MAX_S, then not again until the claim queue
has been seen idle (a stream of claims cannot starve the pool's refills)."""

from __future__ import annotations

from typing import Any

import pytest

from prewarm.handlers import runtime as runtime_module
from prewarm.handlers.runtime import CLAIMS_FIRST_MAX_S, Runtime
from prewarm.settings import Settings

KEY = ("ns", "p")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(runtime_module.time, "monotonic", clock)
    return clock


def _runtime(monkeypatch: pytest.MonkeyPatch) -> Runtime:
    rt = Runtime(settings=Settings(), kube=None, ledger=None)  # type: ignore[arg-type]
    requeued: list[Any] = []
    monkeypatch.setattr(rt, "requeue_after", lambda key, delay: requeued.append((key, delay)))
    return rt


def test_idle_claim_queue_never_holds_a_pass_back(
    monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    rt = _runtime(monkeypatch)
    assert not rt.yield_to_claims(KEY)
    assert not rt.claims_first(KEY)


def test_a_stream_of_claims_holds_a_preset_back_once_for_the_bound(
    monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    rt = _runtime(monkeypatch)
    rt.claim_queue.add(("ns", "c"))  # in flight, and stays so: a stream
    assert rt.yield_to_claims(KEY)
    assert rt.claims_first(KEY)
    clock.now += CLAIMS_FIRST_MAX_S / 2
    assert rt.yield_to_claims(KEY)
    clock.now += CLAIMS_FIRST_MAX_S
    # Waited long enough: the pass runs, and creates too (no claims_busy).
    assert not rt.yield_to_claims(KEY)
    assert not rt.claims_first(KEY)
    # ...and neither waits again while the stream goes on.
    clock.now += 0.1
    assert not rt.yield_to_claims(KEY)
    assert not rt.claims_first(KEY)


def test_the_bound_starts_again_once_the_claim_queue_was_idle(
    monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    rt = _runtime(monkeypatch)
    rt.memory.preset(KEY).claims_first_spent = True
    assert not rt.yield_to_claims(KEY)  # idle: the bound resets
    rt.claim_queue.add(("ns", "c"))
    assert rt.yield_to_claims(KEY)
    assert rt.claims_first(KEY)
