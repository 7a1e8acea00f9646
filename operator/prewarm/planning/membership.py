"""Which PrebuiltWorkspaces the operator trusts as its own: pure.

Naming a preset in `spec.presetRef` is not enough: anyone who may create a
PrebuiltWorkspace could plant one (and its pod) in a pool and have it handed
to the next claimant, credentials and all. The operator trusts a workspace
only if the object that made it still controls it:

- an unclaimed workspace is a **pool member** when its controller
  ownerReference is its Preset, by the Preset's uid (a preset deleted and
  re-created under the same name has a new uid: its predecessor's orphans
  are not inherited);
- a claimed workspace (`spec.claimRef` set: taken from the pool, or built
  cold for a claim) is the claim's when its controller ownerReference is
  that WorkspaceClaim, by the uid `spec.claimRef` names;
- and in both cases its pod (named like it), once there, is controlled by
  it, by the workspace's uid: a pod planted under the name before the
  operator's create (which then answers 409) is not the operator's;
- anything else is **foreign**: ignored, never counted, deleted, tracked or
  handed to a claim. It is not adopted (docs/decisions.md, "Pool
  membership"): the operator cannot vouch for what it did not build.

A pool member is a **claim candidate** only if it was built from the template
the operator would render now (`spec.templateHash` equal to the preset's
current hash) and is Ready and unclaimed: `planning.claims.eligible` checks
that on the members this module lets through. Members of an older template
stay members so that the pool deletes them as outdated.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prewarm.api.constants import GROUP, KIND_PRESET, KIND_WORKSPACE_CLAIM


@dataclass(frozen=True)
class Controller:
    """A controller ownerReference, as far as membership needs it."""

    api_group: str
    kind: str
    name: str
    uid: str


def controller_of(owner_references: Iterable[Mapping[str, Any]] | None) -> Controller | None:
    """The ownerReference with `controller: true` (Kubernetes allows at most one)."""
    for ref in owner_references or ():
        if ref.get("controller") is True:
            api_version = str(ref.get("apiVersion", ""))
            return Controller(
                api_group=api_version.rsplit("/", 1)[0] if "/" in api_version else "",
                kind=str(ref.get("kind", "")),
                name=str(ref.get("name", "")),
                uid=str(ref.get("uid", "")),
            )
    return None


class Membership(enum.StrEnum):
    POOL = "Pool"  # an unclaimed workspace of the preset's pool
    CLAIMED = "Claimed"  # a workspace its claim controls
    FOREIGN = "Foreign"  # not made by the operator, or no longer its own: ignored


@dataclass(frozen=True)
class Verdict:
    membership: Membership
    why: str = ""  # for FOREIGN: what failed, for the log

    @property
    def trusted(self) -> bool:
        return self.membership is not Membership.FOREIGN


def membership(
    preset_uid: str | None,
    controller: Controller | None,
    claim_uid: str,
    workspace_uid: str = "",
    pod_controller_uid: str | None = None,
) -> Verdict:
    """Whether a workspace of a preset is the operator's, and as what.

    `preset_uid`: the uid of the Preset the workspace names (None if that
    preset is not known: then no unclaimed workspace is a member);
    `controller`: its controller ownerReference; `claim_uid`: the uid in its
    `spec.claimRef` ("" while unclaimed); `pod_controller_uid`: the uid of the
    controller of the pod named like the workspace (None: no such pod yet).
    """
    verdict = _by_owner(preset_uid, controller, claim_uid)
    if verdict.trusted and pod_controller_uid is not None and pod_controller_uid != workspace_uid:
        return Verdict(
            Membership.FOREIGN,
            f"its pod is controlled by uid {pod_controller_uid or '(none)'}, not by the workspace",
        )
    return verdict


def _by_owner(preset_uid: str | None, controller: Controller | None, claim_uid: str) -> Verdict:
    if controller is None:
        return Verdict(Membership.FOREIGN, "it has no controller ownerReference")
    if controller.api_group != GROUP:
        return Verdict(
            Membership.FOREIGN, f"its controller is a {controller.kind} of {controller.api_group!r}"
        )
    if claim_uid:
        if controller.kind == KIND_WORKSPACE_CLAIM and controller.uid == claim_uid:
            return Verdict(Membership.CLAIMED)
        return Verdict(
            Membership.FOREIGN,
            f"it names claim uid {claim_uid} but its controller is "
            f"{controller.kind} {controller.name} ({controller.uid})",
        )
    if controller.kind == KIND_PRESET and preset_uid and controller.uid == preset_uid:
        return Verdict(Membership.POOL)
    return Verdict(
        Membership.FOREIGN,
        f"its controller is {controller.kind} {controller.name} ({controller.uid}), "
        f"not the Preset's uid {preset_uid or '(preset unknown)'}",
    )
