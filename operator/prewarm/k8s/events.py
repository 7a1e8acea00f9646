"""Kubernetes Events about prewarm objects (core/v1, visible in `kubectl describe`).

Events are posted on transitions only (the planner decides which), never per
loop: a notification stream nobody can mute is what made Coder remove theirs.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Literal

from prewarm.k8s.client import ApiError, Kube

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]


async def post_event(
    kube: Kube,
    *,
    api_version: str,
    kind: str,
    namespace: str,
    name: str,
    uid: str,
    type_: EventType,
    reason: str,
    message: str,
    once_key: str | None = None,
) -> None:
    """Post an Event. With `once_key` its name is derived from the object's uid
    and the key, so a second post of it (a pass that ran before the watch
    showed the first one's effect, another replica, a restart) finds it there
    and adds nothing."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    suffix = (
        hashlib.sha256(f"{uid}/{once_key}".encode()).hexdigest()[:16]
        if once_key
        else uuid.uuid4().hex[:16]
    )
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{suffix}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": api_version,
            "kind": kind,
            "namespace": namespace,
            "name": name,
            "uid": uid,
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "prewarm"},
        "reportingComponent": "prewarm.dev/operator",
        "reportingInstance": kube.instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        await kube.create_event(namespace, body)
    except ApiError as error:
        if once_key and error.conflict:
            return  # posted before
        # An Event is a notification, not state: losing one must not fail a reconcile.
        log.warning("could not post event %s on %s/%s: %s", reason, namespace, name, error)
