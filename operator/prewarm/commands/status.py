"""`prewarm status`: presets and their pools, hard-limit state, and recent claims."""

from __future__ import annotations

from prewarm.api.constants import PLURAL_PRESETS
from prewarm.commands.connect import connect_kube
from prewarm.commands.table import render_table
from prewarm.ledger.models import BuildRecord
from prewarm.ledger.repository import Ledger


async def _recent_claims(database_url: str) -> str:
    ledger = await Ledger.connect(database_url)
    try:
        claims = await ledger.recent_claims(10)
    finally:
        await ledger.close()
    return render_table(
        ["NAMESPACE", "CLAIM", "OWNER", "SOURCE", "WORKSPACE", "REQUESTED", "BOUND"],
        [
            [
                c.namespace,
                c.claim_name,
                c.owner,
                c.source or "",
                c.workspace_name or "",
                c.requested_at.isoformat(timespec="seconds") if c.requested_at else "",
                c.bound_at.isoformat(timespec="seconds") if c.bound_at else "",
            ]
            for c in claims
        ],
    )


async def status_report(namespace: str | None, database_url: str | None) -> str:
    kube = await connect_kube()
    try:
        presets = await kube.list_objects(PLURAL_PRESETS, namespace)
    finally:
        await kube.close()
    rows = []
    for p in sorted(presets, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
        st = p.get("status") or {}
        last = (st.get("lastFailure") or {}).get("reason", "")
        rows.append(
            [
                p["metadata"]["namespace"],
                p["metadata"]["name"],
                st.get("desired", 0),
                st.get("ready", 0),
                st.get("starting", 0),
                st.get("claimed", 0),
                st.get("failed", 0),
                st.get("summary") or st.get("prebuildStatus", "-"),
                "yes" if st.get("paused") else "",
                last,
            ]
        )
    out = render_table(
        [
            "NAMESPACE",
            "PRESET",
            "DESIRED",
            "READY",
            "STARTING",
            "CLAIMED",
            "FAILED",
            "STATUS",
            "PAUSED",
            "LAST FAILURE",
        ],
        rows,
    )
    if database_url:
        out += "\n\nRecent claims\n" + await _recent_claims(database_url)
    return out


async def history_report(database_url: str, namespace: str, preset: str, limit: int) -> str:
    ledger = await Ledger.connect(database_url)
    try:
        builds = await ledger.history(namespace, preset, limit)
    finally:
        await ledger.close()
    return render_table(
        ["WORKSPACE", "TEMPLATE", "STATE", "STARTED", "READY", "ENDED", "REASON", "MESSAGE"],
        [_history_row(b) for b in builds],
    )


def _history_row(b: BuildRecord) -> list[str | None]:
    """A failure says why it failed; a disruption (counted in no policy) says
    what the infrastructure did, after a success if the build was Ready first."""
    disrupted = b.disrupted_at is not None and b.state != "failed"
    state = "succeeded, then disrupted" if disrupted and b.state == "succeeded" else b.state
    ended = b.failed_at or (b.disrupted_at if disrupted else None)
    return [
        b.workspace_name,
        b.template_hash,
        state,
        b.started_at.isoformat(timespec="seconds") if b.started_at else "",
        b.ready_at.isoformat(timespec="seconds") if b.ready_at else "",
        ended.isoformat(timespec="seconds") if ended else "",
        (b.disruption_reason if disrupted else b.failure_reason) or "",
        ((b.disruption_message if disrupted else b.failure_message) or "")[:80],
    ]


async def request_retry(namespace: str, preset: str, token: str) -> None:
    from prewarm.api.constants import ANNOTATION_RETRY

    kube = await connect_kube()
    try:
        await kube.patch_preset(
            namespace, preset, {"metadata": {"annotations": {ANNOTATION_RETRY: token}}}
        )
    finally:
        await kube.close()
