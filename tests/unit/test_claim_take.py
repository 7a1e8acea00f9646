"""A take that meets a change after its claim's Bound: the workspace is kept
for that claim until its next pass looks (which comes soon), unless it is gone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from prewarm.api.workspace import WorkspacePhase
from prewarm.handlers.claim_take import TAKE_RETRY_S, take_and_hand_over
from prewarm.handlers.runtime import Runtime
from prewarm.handlers.watched import ClaimEntry, WorkspaceEntry
from prewarm.k8s.core import ApiError
from prewarm.settings import Settings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class RefusingKube:
    """The API server's answer to the take: an error status."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.patched: list[str] = []

    async def patch_workspace(self, namespace: str, name: str, patch: Any) -> Any:
        self.patched.append(name)
        raise ApiError(self.status, "", "refused")


def _take(status: int) -> tuple[Runtime, bool, float | None]:
    claim = ClaimEntry.from_body(
        {
            "metadata": {"namespace": "ns", "name": "c", "uid": "uid-c"},
            "spec": {"presetRef": {"name": "p"}, "owner": "carol"},
        }
    )
    ws = WorkspaceEntry("ns", "w1", "wuid-1", "7", "p", "h", "", WorkspacePhase.READY, NOW, NOW,
                        None, None, False)  # fmt: skip
    rt = Runtime(settings=Settings(), kube=RefusingKube(status), ledger=None)  # type: ignore[arg-type]

    async def run() -> tuple[bool, float | None]:
        taken = await take_and_hand_over(rt, claim, ws, 1, (), None)
        loop = asyncio.get_running_loop()
        timer = rt._timers.get(("claim", ("ns", "c")))
        due = None if timer is None else timer[0] - loop.time()
        for _, handle in rt._timers.values():
            handle.cancel()
        return taken, due

    taken, due = asyncio.run(run())
    return rt, taken, due


@pytest.mark.parametrize("status", [409, 422])
def test_a_take_that_met_a_change_keeps_the_workspace_for_its_claim(status: int) -> None:
    rt, taken, due = _take(status)
    assert not taken
    assert rt.promised == {"w1": ("ns", "c")}
    assert "w1" in rt.kept_off()
    assert due is not None
    assert 0 < due <= TAKE_RETRY_S


def test_a_take_of_a_workspace_gone_keeps_nothing() -> None:
    rt, taken, due = _take(404)
    assert not taken
    assert rt.promised == {}
    assert due is not None


def test_any_other_refusal_is_an_error_of_the_pass() -> None:
    with pytest.raises(ApiError):
        _take(500)
