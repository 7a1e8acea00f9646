"""`prewarm status` and `prewarm history`: presets and their pools, hard-limit
state, recent claims; recent builds of one preset. Rows are dicts (the JSON
form of `-o json|yaml`); the tables name their columns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prewarm.api.constants import PLURAL_PRESETS
from prewarm.commands.connect import Target, connect_kube, connect_ledger
from prewarm.commands.output import Column, Row, Section
from prewarm.ledger.models import BuildRecord

PRESET_COLUMNS = (
    Column("NAMESPACE", "namespace"),
    Column("PRESET", "name"),
    Column("DESIRED", "desired"),
    Column("READY", "ready"),
    Column("STARTING", "starting"),
    Column("CLAIMED", "claimed"),
    Column("FAILED", "failed"),
    Column("STATUS", "status"),
    Column("PAUSED", "paused"),
    Column("LAST FAILURE", "lastFailure"),
    Column("TEMPLATE", "templateHash", wide=True),
    Column("BACKOFF UNTIL", "backoffUntil", wide=True),
    Column("MESSAGE", "lastFailureMessage", wide=True),
)
CLAIM_COLUMNS = (
    Column("NAMESPACE", "namespace"),
    Column("CLAIM", "name"),
    Column("OWNER", "owner"),
    Column("SOURCE", "source"),
    Column("WORKSPACE", "workspace"),
    Column("REQUESTED", "requestedAt"),
    Column("BOUND", "boundAt"),
)
BUILD_COLUMNS = (
    Column("WORKSPACE", "workspace"),
    Column("TEMPLATE", "templateHash"),
    Column("STATE", "state"),
    Column("STARTED", "startedAt"),
    Column("READY", "readyAt"),
    Column("ENDED", "endedAt"),
    Column("REASON", "reason"),
    Column("MESSAGE", "message", width=80),
    Column("UID", "uid", wide=True),
)


def _time(at: datetime | None) -> str | None:
    return at.isoformat(timespec="seconds") if at else None


def preset_row(preset: dict[str, Any]) -> Row:
    st = preset.get("status") or {}
    failure = st.get("lastFailure") or {}
    return {
        "namespace": preset["metadata"]["namespace"],
        "name": preset["metadata"]["name"],
        "desired": st.get("desired", 0),
        "ready": st.get("ready", 0),
        "starting": st.get("starting", 0),
        "claimed": st.get("claimed", 0),
        "failed": st.get("failed", 0),
        "status": st.get("summary") or st.get("prebuildStatus", "-"),
        "paused": bool(st.get("paused")),
        "lastFailure": failure.get("reason"),
        "lastFailureMessage": failure.get("message"),
        "templateHash": st.get("templateHash"),
        "backoffUntil": st.get("backoffUntil"),
    }


async def _recent_claims(database_url: str) -> list[Row]:
    ledger = await connect_ledger(database_url)
    try:
        claims = await ledger.recent_claims(10)
    finally:
        await ledger.close()
    return [
        {
            "namespace": c.namespace,
            "name": c.claim_name,
            "owner": c.owner,
            "source": c.source,
            "workspace": c.workspace_name,
            "requestedAt": _time(c.requested_at),
            "boundAt": _time(c.bound_at),
        }
        for c in claims
    ]


async def status_sections(
    target: Target, namespace: str | None, database_url: str | None
) -> list[Section]:
    """Presets of `namespace` (None: all namespaces), then the ledger's recent claims."""
    kube = await connect_kube(target)
    try:
        presets = await kube.list_objects(PLURAL_PRESETS, namespace)
    finally:
        await kube.close()
    rows = [preset_row(p) for p in presets]
    rows.sort(key=lambda r: (r["namespace"], r["name"]))
    sections = [Section("presets", rows, PRESET_COLUMNS)]
    if database_url:
        claims = await _recent_claims(database_url)
        sections.append(Section("recentClaims", claims, CLAIM_COLUMNS, "Recent claims"))
    return sections


async def history_section(database_url: str, namespace: str, preset: str, limit: int) -> Section:
    ledger = await connect_ledger(database_url)
    try:
        builds = await ledger.history(namespace, preset, limit)
    finally:
        await ledger.close()
    return Section("builds", [_history_row(b) for b in builds], BUILD_COLUMNS)


def _history_row(b: BuildRecord) -> Row:
    """A failure says why it failed; a disruption (counted in no policy) says
    what the infrastructure did, after a success if the build was Ready first."""
    disrupted = b.disrupted_at is not None and b.state != "failed"
    state = "succeeded, then disrupted" if disrupted and b.state == "succeeded" else b.state
    return {
        "workspace": b.workspace_name,
        "templateHash": b.template_hash,
        "state": state,
        "startedAt": _time(b.started_at),
        "readyAt": _time(b.ready_at),
        "endedAt": _time(b.failed_at or (b.disrupted_at if disrupted else None)),
        "reason": b.disruption_reason if disrupted else b.failure_reason,
        "message": b.disruption_message if disrupted else b.failure_message,
        "uid": b.workspace_uid,
    }


async def request_retry(target: Target, namespace: str, preset: str, token: str) -> None:
    from prewarm.api.constants import ANNOTATION_RETRY

    kube = await connect_kube(target)
    try:
        await kube.patch_preset(
            namespace, preset, {"metadata": {"annotations": {ANNOTATION_RETRY: token}}}
        )
    finally:
        await kube.close()
