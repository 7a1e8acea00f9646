"""kopf's settings as the operator sets them at start (handlers/registrations.py)."""

from __future__ import annotations

import kopf

from prewarm.api.constants import GROUP
from prewarm.handlers.registrations import NoDiffBase, configure_kopf


def test_kopf_watches_only_presets() -> None:
    """Workspace pods, PrebuiltWorkspaces and WorkspaceClaims are the
    operator's own watches (k8s/list_watch.py): a kopf handler for any would
    list and process every one through kopf again, and hold the listing until
    all of it is indexed."""
    registry = kopf.get_default_registry()
    resources = {
        (h.selector.group, h.selector.any_name)
        for handlers in (registry._indexing, registry._watching)
        for h in handlers.get_all_handlers()
        if h.selector is not None
    }
    assert resources == {(GROUP, "presets")}


def test_no_diff_base_bounded_watches_and_paged_listings() -> None:
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    assert isinstance(settings.persistence.diffbase_storage, NoDiffBase)
    assert (settings.watching.server_timeout, settings.watching.client_timeout) == (45, 60)
    assert settings.watching.chunk_size == 500
