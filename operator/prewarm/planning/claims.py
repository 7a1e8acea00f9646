"""What to do with a pending WorkspaceClaim: pure.

Candidates are Ready, unclaimed instances of the preset's current template,
oldest-ready first (they are closest to their TTL). The glue tries them in
order with a conditional write, so exactly one claim wins each workspace.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from prewarm.api import reasons
from prewarm.api.durations import format_duration
from prewarm.api.preset import PrebuildStatus
from prewarm.api.workspace import WorkspacePhase
from prewarm.planning.pool import Instance


class Action(enum.StrEnum):
    TAKE_PREBUILT = "TakePrebuilt"
    COLD_START = "ColdStart"
    WAIT = "Wait"  # a condition says why; try again later
    FAIL = "Fail"  # nothing will make it work


@dataclass(frozen=True)
class ClaimDecision:
    action: Action
    reason: str
    message: str
    candidates: tuple[str, ...] = ()
    wait_left: timedelta | None = None  # WAIT: how long until the claim gives up (None: never)


@dataclass(frozen=True)
class PresetView:
    exists: bool
    template_hash: str = ""
    prebuild_status: PrebuildStatus = PrebuildStatus.NORMAL
    paused: bool = False


def eligible(instances: Iterable[Instance], template_hash: str) -> list[str]:
    ready = [
        i
        for i in instances
        if i.phase is WorkspacePhase.READY
        and not i.claimed
        and not i.deleting
        and i.template_hash == template_hash
    ]
    ready.sort(key=lambda i: (i.ready_at or i.created_at, i.name))
    return [i.name for i in ready]


def decide_claim(
    preset: PresetView,
    instances: Sequence[Instance],
    reserved: frozenset[str] = frozenset(),
    secret_missing: str | None = None,
    waited: timedelta = timedelta(0),
    wait_limit: timedelta | None = None,
    cold_build: str | None = None,
) -> ClaimDecision:
    """What to do with a pending claim that has existed for `waited`.

    It waits for what it names (its preset, its owner Secret) at most
    `wait_limit` (None: forever), then fails with the reason it waited for:
    a preset deleted for good would otherwise leave it Pending forever.
    `cold_build`: the claim's status names a cold build already started (by
    another process, or before a restart) that is not in the watch yet.
    """
    decision = _decide(preset, instances, reserved, secret_missing, cold_build)
    if decision.action is not Action.WAIT or wait_limit is None:
        return decision
    if waited < wait_limit:
        return replace(decision, wait_left=wait_limit - waited)
    return replace(
        decision,
        action=Action.FAIL,
        message=f"{decision.message}; gave up after waiting {format_duration(wait_limit)} "
        "(PREWARM_CLAIM_WAIT_LIMIT)",
    )


def _decide(
    preset: PresetView,
    instances: Sequence[Instance],
    reserved: frozenset[str],
    secret_missing: str | None,
    cold_build: str | None,
) -> ClaimDecision:
    if not preset.exists:
        return ClaimDecision(
            Action.WAIT,
            reasons.REASON_PRESET_NOT_FOUND,
            "the preset does not exist (yet) in this namespace",
        )
    if cold_build:
        # Its name is fixed by the claim, so building again is idempotent;
        # taking a warm one as well would give the claim two workspaces.
        return ClaimDecision(
            Action.COLD_START, reasons.REASON_COLD_START, f"resuming the cold build {cold_build}"
        )
    if secret_missing:
        return ClaimDecision(
            Action.WAIT,
            "SecretNotFound",
            f"spec.ownerSecretRef names Secret {secret_missing!r}, which does not exist (yet)",
        )
    # A Ready workspace of the current template serves a claim whatever the
    # preset's state: it was built and works (the state only stops new builds).
    candidates = tuple(n for n in eligible(instances, preset.template_hash) if n not in reserved)
    if candidates:
        return ClaimDecision(Action.TAKE_PREBUILT, reasons.REASON_CLAIMED_PREBUILT, "", candidates)
    if preset.prebuild_status is PrebuildStatus.VALIDATION_FAILED:
        return ClaimDecision(
            Action.FAIL,
            "PresetValidationFailed",
            "the preset's pod template is rejected by the API server; fix the preset",
        )
    if preset.prebuild_status is PrebuildStatus.HARD_LIMITED:
        return ClaimDecision(
            Action.FAIL,
            "PresetHardLimited",
            "the preset's prebuilds keep failing (hard limit reached); "
            "a cold start would fail the same way",
        )
    why = "the preset is paused" if preset.paused else "no warm workspace is ready"
    return ClaimDecision(Action.COLD_START, reasons.REASON_COLD_START, why)
