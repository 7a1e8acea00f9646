"""Which image the agent sidecar runs: a pure choice, made once at start.

An explicit setting (PREWARM_AGENT_IMAGE) wins. Otherwise the agent follows the
image of the operator's own container, read from its own pod, so that
`kubectl set image deployment/prewarm operator=...` moves the agent too (an
environment variable the chart rendered would keep the old image). Outside a
pod (a laptop, the test tiers) the fallback is the released image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The chart's (and deploy/prewarm.yaml's) name for the operator container.
OPERATOR_CONTAINER_NAME = "operator"


def own_container_image(pod: Mapping[str, Any] | None, container: str) -> str:
    """The image of `container` in the pod's spec; the only container's if none has
    that name (a hand-written Deployment); "" when it cannot be told."""
    if not pod:
        return ""
    containers = [c for c in (pod.get("spec") or {}).get("containers") or [] if c]
    named = [c for c in containers if c.get("name") == container]
    chosen = named or (containers if len(containers) == 1 else [])
    return str(chosen[0].get("image") or "") if chosen else ""


def choose_agent_image(
    explicit: str, own_pod: Mapping[str, Any] | None, fallback: str
) -> tuple[str, str]:
    """(image, where it came from): "setting", "operator pod" or "default"."""
    if explicit:
        return explicit, "setting"
    own = own_container_image(own_pod, OPERATOR_CONTAINER_NAME)
    if own:
        return own, "operator pod"
    return fallback, "default"
