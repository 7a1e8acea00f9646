"""What to do with a pending WorkspaceClaim, and with the workspace it owns: pure.

Candidates are Ready, unclaimed instances of the preset's current template,
oldest-ready first (they are closest to their TTL). The glue tries them in
order with a conditional write, so exactly one claim wins each workspace.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from prewarm.api import reasons
from prewarm.api.claim import ClaimPhase, OnWorkspaceLost
from prewarm.api.durations import format_duration
from prewarm.api.preset import PrebuildStatus
from prewarm.api.workspace import WorkspacePhase
from prewarm.planning.failures import Outcome, PodView, Verdict, classify
from prewarm.planning.pool import STARTING_PHASES, Instance

# How often a waiting claim looks again (the watch event of what it waits for usually comes first).
WAIT_POLL_S = 5.0
# How soon a claim whose cold build is not in the watch yet looks again.
COLD_BUILD_WATCH_S = 0.5
# How soon a claim looks again while this replica may not write (the lease is not fresh).
LEASE_HOLD_S = 0.5


class Route(enum.StrEnum):
    """Which path one pass of a claim takes."""

    FORGET = "Forget"  # gone or going: its memory goes (its workspace goes by ownerReference)
    HOLD = "Hold"  # this replica may not write now: come back soon
    DONE = "Done"  # Failed or Expired: nothing will change that
    EXPIRE = "Expire"  # its lifetime or shutdownAt came: delete the workspace, say Expired
    BOUND = "Bound"  # follow-ups: the pod knows its owner, the agents re-initialised
    WATCH_LAGS = "WatchLags"  # bound or cold-started a moment ago; the watch has not shown it
    FOLLOW_OWN = "FollowOwn"  # a workspace already carries the claim: drive it to Bound or Failed
    CLAIM_NEW = "ClaimNew"  # take a warm workspace or build one (decide_claim)


@dataclass(frozen=True)
class ClaimRoute:
    route: Route
    requeue_after: float | None = None


def awaits_answer(phase: str | None) -> bool:
    """Whether a claim's user still waits for it to be Bound or Failed: what a
    fresh operator looks at as soon as it has listed the claims."""
    return phase in (None, "", ClaimPhase.PENDING)


def claim_route(
    *,
    exists: bool,
    may_act: bool,
    phase: ClaimPhase | None,
    bound_here: bool,
    carried: bool,
    cold_start_pending: bool,
    expired: bool = False,
    lost_here: bool = False,
) -> ClaimRoute:
    """The path of one pass. `bound_here`: this process bound it and the watch
    has not shown Bound yet; `carried`: a workspace carries the claim's label;
    `cold_start_pending`: this process created its cold workspace, not yet watched;
    `expired`: its deadline (`claim_deadline`) has passed; `lost_here`: this
    process saw its workspace lost and rebinds it, the watch still shows Bound."""
    if not exists:
        return ClaimRoute(Route.FORGET)
    if not may_act:
        return ClaimRoute(Route.HOLD, LEASE_HOLD_S)
    if phase in (ClaimPhase.FAILED, ClaimPhase.EXPIRED):
        return ClaimRoute(Route.DONE)
    if expired:
        # Bound or not: a claim past its shutdownAt gets no (new) workspace.
        return ClaimRoute(Route.EXPIRE)
    if phase is ClaimPhase.BOUND and lost_here:
        return ClaimRoute(Route.WATCH_LAGS, COLD_BUILD_WATCH_S)
    if phase is ClaimPhase.BOUND:
        return ClaimRoute(Route.BOUND)
    if bound_here:
        return ClaimRoute(Route.WATCH_LAGS)
    if carried:
        return ClaimRoute(Route.FOLLOW_OWN)
    if cold_start_pending:
        # Taking a warm one now would give this claim two workspaces.
        return ClaimRoute(Route.WATCH_LAGS, COLD_BUILD_WATCH_S)
    return ClaimRoute(Route.CLAIM_NEW)


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
    requeue_after: float | None = None  # WAIT: when to look again (seconds)


@dataclass(frozen=True)
class PresetView:
    exists: bool
    template_hash: str = ""
    prebuild_status: PrebuildStatus = PrebuildStatus.NORMAL
    paused: bool = False
    previous_template_hash: str | None = None  # status.previousTemplateHash: a rollout


def eligible(
    instances: Iterable[Instance], template_hash: str, previous_hash: str | None = None
) -> list[str]:
    """Ready, unclaimed workspaces of the current template, oldest-ready first;
    then, during a rollout, those of the template it rolls away from (they
    stay claimable until their replacements are Ready)."""

    def ready(thash: str) -> list[Instance]:
        found = [
            i
            for i in instances
            if i.phase is WorkspacePhase.READY
            and not i.claimed
            and not i.deleting
            and i.template_hash == thash
        ]
        return sorted(found, key=lambda i: (i.ready_at or i.created_at, i.name))

    outdated = ready(previous_hash) if previous_hash and previous_hash != template_hash else []
    return [i.name for i in ready(template_hash) + outdated]


def decide_claim(
    preset: PresetView,
    instances: Sequence[Instance],
    reserved: frozenset[str] = frozenset(),
    secret_missing: str | None = None,
    waited: timedelta = timedelta(0),
    wait_limit: timedelta | None = None,
    cold_build: str | None = None,
    fresh: bool = False,
    grace: timedelta = timedelta(0),
    pending_for: timedelta | None = None,
    parameters_problem: str | None = None,
) -> ClaimDecision:
    """What to do with a pending claim that has existed for `waited`.

    It waits for what it names (its preset, its owner Secret) at most
    `wait_limit` (None: forever), then fails with the reason it waited for:
    a preset deleted for good would otherwise leave it Pending forever.
    `cold_build`: the claim's status names a cold build already started (by
    another process, or before a restart) that is not in the watch yet.
    `fresh`: the claim opts out of the pool (spec.fresh): always a cold start.
    `grace`: with no Ready candidate but warm ones starting, wait this long
    (counted by `pending_for`, default `waited`) for one before a cold start.
    `parameters_problem`: the claim's spec.parameters do not fit the preset's
    spec.claimParameters (planning.claim_parameters): it fails at once, since
    its parameters are immutable and nothing it could take would fit them.
    """
    if preset.exists and parameters_problem and not cold_build:
        return ClaimDecision(Action.FAIL, reasons.REASON_INVALID_PARAMETERS, parameters_problem)
    decision = _decide(preset, instances, reserved, secret_missing, cold_build, fresh)
    if decision.action is Action.COLD_START and not cold_build and not fresh:
        since = waited if pending_for is None else pending_for
        decision = _grace(decision, preset, instances, reserved, grace, since)
    if decision.action is not Action.WAIT or decision.reason == reasons.REASON_WAITING_FOR_WARM:
        return decision
    if wait_limit is None:
        return replace(decision, requeue_after=WAIT_POLL_S)
    if waited < wait_limit:
        left = wait_limit - waited
        # Back just after the limit, if it comes first, to fail the claim on time.
        again = min(WAIT_POLL_S, left.total_seconds() + 0.1)
        return replace(decision, wait_left=left, requeue_after=again)
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
    fresh: bool = False,
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
            reasons.REASON_SECRET_NOT_FOUND,
            f"spec.ownerSecretRef names Secret {secret_missing!r}, which does not exist (yet)",
        )
    # A Ready workspace of the current template serves a claim whatever the
    # preset's state: it was built and works (the state only stops new builds).
    warm = eligible(instances, preset.template_hash, preset.previous_template_hash)
    candidates = tuple(n for n in warm if n not in reserved)
    if candidates and not fresh:
        return ClaimDecision(Action.TAKE_PREBUILT, reasons.REASON_CLAIMED_PREBUILT, "", candidates)
    if preset.prebuild_status is PrebuildStatus.VALIDATION_FAILED:
        return ClaimDecision(
            Action.FAIL,
            reasons.REASON_PRESET_VALIDATION_FAILED,
            "the preset's pod template is rejected by the API server; fix the preset",
        )
    if preset.prebuild_status is PrebuildStatus.HARD_LIMITED:
        return ClaimDecision(
            Action.FAIL,
            reasons.REASON_PRESET_HARD_LIMITED,
            "the preset's prebuilds keep failing (hard limit reached); "
            "a cold start would fail the same way",
        )
    if fresh:
        why = "the claim asks for a fresh build (spec.fresh)"
    else:
        why = "the preset is paused" if preset.paused else "no warm workspace is ready"
    return ClaimDecision(Action.COLD_START, reasons.REASON_COLD_START, why)


def starting(instances: Iterable[Instance], template_hash: str) -> list[str]:
    """Unclaimed workspaces of the current template on their way to Ready."""
    return sorted(
        i.name
        for i in instances
        if i.phase in STARTING_PHASES
        and not i.claimed
        and not i.deleting
        and i.template_hash == template_hash
    )


def _grace(
    decision: ClaimDecision,
    preset: PresetView,
    instances: Sequence[Instance],
    reserved: frozenset[str],
    grace: timedelta,
    pending_for: timedelta,
) -> ClaimDecision:
    """A cold start waits up to `grace` while warm workspaces are starting:
    one that becomes Ready within it is taken instead (the watch wakes the claim)."""
    if grace <= timedelta(0) or pending_for >= grace:
        return decision
    coming = [n for n in starting(instances, preset.template_hash) if n not in reserved]
    if not coming:
        return decision
    left = grace - pending_for
    return ClaimDecision(
        Action.WAIT,
        reasons.REASON_WAITING_FOR_WARM,
        f"{len(coming)} warm workspace(s) starting; waiting up to "
        f"{format_duration(grace)} (coldStartGrace) before a cold start",
        wait_left=left,
        requeue_after=min(WAIT_POLL_S, left.total_seconds() + 0.1),
    )


class Follow(enum.StrEnum):
    """What to do with the workspace that already carries a pending claim."""

    FINISH_TAKE = "FinishTake"  # a prebuilt take got as far as the workspace: bind, annotate
    WAIT = "Wait"  # its pod is not in the watch yet (its event wakes us), or not Ready yet
    CREATE_POD = "CreatePod"  # a cold workspace without a pod past the grace: create it
    FAIL = "Fail"  # the cold build failed or was disrupted: the workspace and the claim say why
    BIND_COLD = "BindCold"  # the cold build is Ready: it is the owner's


@dataclass(frozen=True)
class FollowStep:
    action: Follow
    outcome: Outcome | None = None  # with FAIL
    generation: int = 0  # with FINISH_TAKE
    # With FINISH_TAKE: the pod does not know this generation yet (the take was
    # cut short before its annotations): its credentials and annotations follow.
    write_pod: bool = False
    requeue_after: float | None = None


# How long a cold workspace may be without its pod before the pod is created
# again (idempotent): the pod watch usually shows it well within this.
COLD_POD_GRACE = timedelta(seconds=5)
# How often a claim looks again at a cold build that is not Ready yet.
COLD_BUILD_POLL_S = 5.0


def follow_own_workspace(
    phase: WorkspacePhase,
    reinit_generation: int,
    created_at: datetime,
    pod: PodView | None,
    preset_known: bool,
    now: datetime,
    readiness_timeout: timedelta,
    crashloop_restarts: int,
    pod_generation: str = "",
) -> FollowStep:
    """A workspace already carries this claim: a cold start in progress, or a
    take whose later steps a crash interrupted. What drives it to Bound or
    Failed. `pod_generation` is the pod's reinit-generation annotation."""
    # Ready with this claim's claimRef: a warm workspace it took (the pool writes
    # Ready; a cold build goes from Building to Claimed), whose take a crash or a
    # failed write interrupted before Bound.
    if phase in (WorkspacePhase.CLAIMED, WorkspacePhase.READY):
        generation = max(reinit_generation, 1)
        return FollowStep(
            Follow.FINISH_TAKE,
            generation=generation,
            write_pod=pod is None or pod_generation != str(generation),
        )
    if pod is None:
        # Usually the watch has not delivered it yet. But a full quota, or a
        # crash between the two creates, leaves a cold workspace without a pod.
        if phase is not WorkspacePhase.PENDING or not preset_known:
            return FollowStep(Follow.WAIT)
        age = now - created_at
        if age < COLD_POD_GRACE:
            return FollowStep(Follow.WAIT, requeue_after=(COLD_POD_GRACE - age).total_seconds())
        return FollowStep(Follow.CREATE_POD)
    outcome = classify(pod, now, readiness_timeout, crashloop_restarts)
    if outcome.verdict is Verdict.BUILDING:
        return FollowStep(Follow.WAIT, requeue_after=COLD_BUILD_POLL_S)
    if outcome.verdict in (Verdict.FAILED, Verdict.DISRUPTED):
        # A cold build the node lost fails the claim too (it is recorded as a
        # disruption, not against the preset); the user asks again.
        return FollowStep(Follow.FAIL, outcome)
    return FollowStep(Follow.BIND_COLD)


def claim_deadline(
    lifetime: timedelta | None, shutdown_at: datetime | None, bound_at: datetime | None
) -> datetime | None:
    """When a claim's workspace goes: `lifetime` after its first binding, or at
    `shutdown_at`, whichever is first; None if neither applies (yet)."""
    ends = [shutdown_at] if shutdown_at is not None else []
    if lifetime is not None and bound_at is not None:
        ends.append(bound_at + lifetime)
    return min(ends) if ends else None


class Held(enum.StrEnum):
    """Whose the workspace a Bound claim names is (a claim binds first and takes
    the workspace right after: docs/decisions.md, "A claim binds first")."""

    MINE = "Mine"  # its claimRef names this claim
    FREE = "Free"  # still the pool's and Ready: the take after Bound has not landed yet
    UNAVAILABLE = "Unavailable"  # another claim's, or no longer Ready, before this claim's take
    GONE = "Gone"  # deleted, or being deleted


def held(claim_uid: str, deleting: bool, holder_uid: str, claimed: bool, ready: bool) -> Held:
    """Whose a Bound claim's workspace (one that is there) is: `holder_uid` is
    the uid in its claimRef, `claimed` whether it has an owner, `ready`
    whether its phase is Ready."""
    if deleting:
        return Held.GONE
    if holder_uid == claim_uid:
        return Held.MINE
    if claimed or holder_uid or not ready:
        return Held.UNAVAILABLE
    return Held.FREE


class Kept(enum.StrEnum):
    """What a Bound claim does about its workspace."""

    KEEP = "Keep"  # the workspace and its pod are there
    FINISH_TAKE = "FinishTake"  # still the pool's: take it now (credentials, annotations follow)
    REBIND = "Rebind"  # lost: take or build another one for the same owner
    FAIL = "Fail"  # lost: the claim fails (spec.onWorkspaceLost: Fail)


@dataclass(frozen=True)
class BoundStep:
    action: Kept
    reason: str = ""  # REBIND/FAIL: WorkspaceDeleted, WorkspaceUnavailable or PodDeleted
    message: str = ""
    requeue_after: float | None = None  # KEEP: when the lifetime ends


def check_bound(
    workspace: str,
    held: Held,
    pod_present: bool,
    policy: OnWorkspaceLost,
    deadline: datetime | None,
    now: datetime,
) -> BoundStep:
    """A Bound claim's workspace is there and its own, still the pool's (its
    take comes now), or was lost (deleted, unavailable, or its pod deleted: the
    owner's state lived in it) and the claim's policy says what now."""
    if held is Held.FREE and pod_present:
        return BoundStep(Kept.FINISH_TAKE)
    if held is Held.MINE and pod_present:
        left = (deadline - now).total_seconds() if deadline is not None else None
        # Back just after the deadline, to expire the claim on time.
        return BoundStep(Kept.KEEP, requeue_after=None if left is None else max(left, 0) + 0.1)
    if held is Held.GONE:
        reason, what = reasons.REASON_WORKSPACE_DELETED, f"workspace {workspace} was deleted"
    elif held is Held.UNAVAILABLE:
        reason = reasons.REASON_WORKSPACE_UNAVAILABLE
        what = (
            f"workspace {workspace} went to another claim, or stopped being Ready, "
            "before this claim's take"
        )
    else:
        reason, what = reasons.REASON_POD_DELETED, f"the pod of workspace {workspace} was deleted"
    if policy is OnWorkspaceLost.FAIL:
        return BoundStep(Kept.FAIL, reason, f"{what} (spec.onWorkspaceLost: Fail)")
    return BoundStep(
        Kept.REBIND, reason, f"{what}; binding another one (spec.onWorkspaceLost: Rebind)"
    )
