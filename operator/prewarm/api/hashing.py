"""template_hash: which version of a preset a workspace was built from.

The hash covers what a workspace *is* (template, parameters, agent hook) and
nothing about how many to keep or how to retry: scaling or tuning the
failure policy must never roll the pool. It is computed from the parsed
model, not the raw object, so spelling differences that mean the same thing
(absent vs empty `labels`, `agent: {}` vs no agent, parameter order) give the
same hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from prewarm.api.preset import PodSecurity, PresetSpec

TEMPLATE_HASH_LENGTH: Final = 10


def template_hash(spec: PresetSpec) -> str:
    """Stable short hex digest (10 chars: fits label values, collisions irrelevant per preset)."""
    canonical = json.dumps(
        _hashed_part(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:TEMPLATE_HASH_LENGTH]


def _hashed_part(spec: PresetSpec) -> dict[str, Any]:
    # Parameters are a map keyed by name (listType=map): their order carries
    # no meaning, so it must not change the hash.
    parameters = sorted(spec.parameters, key=lambda p: p.name)
    part: dict[str, Any] = {
        "template": spec.template.model_dump(mode="json", by_alias=True, exclude_none=True),
        "parameters": [p.model_dump(mode="json", by_alias=True) for p in parameters],
        "agent": spec.agent.model_dump(
            mode="json",
            by_alias=True,
            exclude_none=True,
            # Left out when empty (the default), like podSecurity below.
            exclude={"containers"} if not spec.agent.containers else None,
        ),
    }
    # It changes the pod, so it is hashed; the default is left out so that
    # presets written before the field existed keep their hash.
    if spec.pod_security is not PodSecurity.RESTRICTED:
        part["podSecurity"] = spec.pod_security.value
    return part
