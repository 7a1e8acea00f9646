"""A small language for build histories: what happened to each prebuild attempt, and when."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial
from typing import Literal

from prewarm.ledger.repository import Ledger
from tests.ledger.support import at

PRESET = "preset-uid-1"
HASH = "hash-current"
OLD_HASH = "hash-previous"

Outcome = Literal["failed", "succeeded", "building", "disrupted", "ready_then_disrupted"]
_uids = itertools.count()


@dataclass(frozen=True)
class Build:
    """One attempt: started at `start` seconds after T0, finished `took` seconds later."""

    outcome: Outcome
    start: float
    took: float = 30.0
    template_hash: str = HASH
    validation_error: bool = False
    reason: str = "CrashLoopBackOff"


failed = partial(Build, "failed")
succeeded = partial(Build, "succeeded")
building = partial(Build, "building")
# Lost to the infrastructure before it was Ready (evicted, unschedulable...).
disrupted = partial(Build, "disrupted", reason="Evicted")
# Ready, then lost (a node went away): the template worked.
ready_then_disrupted = partial(Build, "ready_then_disrupted", reason="NodeLost")


async def record(ledger: Ledger, builds: list[Build], preset_uid: str = PRESET) -> None:
    for build in builds:
        uid = f"ws-{next(_uids)}"
        await ledger.record_build_started(
            preset_uid, uid, f"pw-{uid}", build.template_hash, at(build.start)
        )
        finished = at(build.start + build.took)
        if build.outcome in ("succeeded", "ready_then_disrupted"):
            await ledger.record_build_succeeded(uid, finished)
        if build.outcome in ("disrupted", "ready_then_disrupted"):
            later = at(build.start + 2 * build.took)
            await ledger.record_build_disrupted(
                uid, build.reason, f"{build.reason} in {uid}", later
            )
        elif build.outcome == "failed":
            await ledger.record_build_failed(
                uid, build.reason, f"{build.reason} in {uid}", finished, build.validation_error
            )
