"""kopf's settings as the operator sets them at start (handlers/registrations.py)."""

from __future__ import annotations

import kopf
from kopf._cogs.structs.references import Resource

from prewarm.api.constants import GROUP, LABEL_WORKSPACE, VERSION
from prewarm.handlers.registrations import NoDiffBase, configure_kopf

PODS = Resource(group="", version="v1", plural="pods", kind="Pod", namespaced=True)


def _resource(plural: str, kind: str) -> Resource:
    return Resource(group=GROUP, version=VERSION, plural=plural, kind=kind, namespaced=True)


def test_the_pod_watch_asks_the_api_server_for_workspace_pods_only() -> None:
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    assert list(settings.watching.label_selectors.collect(PODS)) == [LABEL_WORKSPACE]
    for plural, kind in (
        ("presets", "Preset"),
        ("prebuiltworkspaces", "PrebuiltWorkspace"),
        ("workspaceclaims", "WorkspaceClaim"),
    ):
        assert list(settings.watching.label_selectors.collect(_resource(plural, kind))) == []


def test_no_diff_base_and_bounded_watches() -> None:
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    assert isinstance(settings.persistence.diffbase_storage, NoDiffBase)
    assert (settings.watching.server_timeout, settings.watching.client_timeout) == (45, 60)
