"""The operator's own watches (k8s/list_watch.py) of pods and PrebuiltWorkspaces
against the real API server: a paged listing, then the watch's events, for one
namespace and for the cluster; and the one-object listing that tells the
operator whether any preset exists."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tests.e2e.support import create_all, preset_manifest

from prewarm.api.constants import (
    API_VERSION,
    GROUP,
    KIND_PREBUILT_WORKSPACE,
    LABEL_PRESET,
    LABEL_WORKSPACE,
    PLURAL_PREBUILT_WORKSPACES,
    PLURAL_PRESETS,
    VERSION,
)
from prewarm.devenv.cluster import LocalCluster
from prewarm.handlers.object_index import ObjectIndex, read_pod, read_workspace
from prewarm.k8s import list_watch
from prewarm.k8s.client import Kube
from prewarm.k8s.list_watch import ListWatch, holds_any, scope_path


def _pod(name: str, labelled: bool = True) -> dict[str, Any]:
    labels = {LABEL_WORKSPACE: name, LABEL_PRESET: "p"} if labelled else {"app": name}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": "c", "image": "busybox"}],
        },
    }


async def _until(check: Any, what: str) -> None:
    for _ in range(300):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def _with_watch(
    cluster: LocalCluster,
    watch_of: Callable[[Kube], ListWatch],
    listed: asyncio.Event,
    steps: Callable[[], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Run the watch `watch_of` makes; once its index holds its listing, the
    test's `steps`, whose answer this returns."""
    kube = await Kube.connect(str(cluster.kubeconfig))
    task = asyncio.create_task(watch_of(kube).run())
    try:
        await asyncio.wait_for(listed.wait(), 30)
        return await steps()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await kube.close()


async def _watch(cluster: LocalCluster, namespace: str, scope: str | None) -> dict[str, Any]:
    """Start a watch over the namespace's five labelled pods, then create one
    more and delete one; what the index held at each step and whom it woke."""
    listed = asyncio.Event()
    woken: list[tuple[str, str, str]] = []
    index = ObjectIndex(read_pod, lambda *who: woken.append(who), [scope], listed.set)
    path = scope_path("", "v1", "pods", scope)

    def ours() -> set[str]:
        return {name for ns, name in index if ns == namespace}

    async def steps() -> dict[str, Any]:
        first = ours()
        await asyncio.to_thread(create_all, cluster, namespace, [_pod("w5")])
        await _until(lambda: "w5" in ours(), "the new pod")
        await asyncio.to_thread(
            cluster.kubectl, "delete", "pod", "-n", namespace, "w0", "--grace-period=0", "--force"
        )
        await _until(lambda: "w0" not in ours(), "the deleted pod gone")
        return {"first": first, "last": ours(), "woken": woken}

    def watch_of(kube: Kube) -> ListWatch:
        return ListWatch(kube.rest, path, index.scope(scope), what="pod", selector=LABEL_WORKSPACE)

    return await _with_watch(cluster, watch_of, listed, steps)


@pytest.mark.parametrize("scope", ["namespace", "cluster"])
def test_the_pod_watch_lists_in_pages_then_follows_only_workspace_pods(
    cluster: LocalCluster, namespace: str, scope: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(list_watch, "PAGE_SIZE", 2)  # five pods: three pages
    create_all(cluster, namespace, [*(_pod(f"w{i}") for i in range(5)), _pod("other", False)])
    seen = asyncio.run(_watch(cluster, namespace, namespace if scope == "namespace" else None))
    assert seen["first"] == {f"w{i}" for i in range(5)}
    assert seen["last"] == {"w1", "w2", "w3", "w4", "w5"}
    # Events (not the first listing) wake the pod's preset.
    assert (namespace, "p", "") in seen["woken"]


def _workspace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND_PREBUILT_WORKSPACE,
        "metadata": {"name": name},
        "spec": {"presetRef": {"name": "p"}, "templateHash": "a" * 16},
    }


async def _watch_workspaces(
    cluster: LocalCluster, namespace: str, scope: str | None
) -> dict[str, Any]:
    """Watch the namespace's three workspaces, then delete one: what the index
    held before and after, and which it reported gone."""
    listed = asyncio.Event()
    gone: list[str] = []
    index = ObjectIndex(
        read_workspace, lambda *_: None, [scope], listed.set, lambda e: gone.append(e.name)
    )
    path = scope_path(GROUP, VERSION, PLURAL_PREBUILT_WORKSPACES, scope)

    def ours() -> set[str]:
        return {e.name for e in index.get((namespace, "p"))}

    async def steps() -> dict[str, Any]:
        first = ours()
        await asyncio.to_thread(
            cluster.kubectl, "delete", PLURAL_PREBUILT_WORKSPACES, "-n", namespace, "w0"
        )
        await _until(lambda: "w0" not in ours(), "the deleted workspace gone")
        return {"first": first, "last": ours(), "gone": gone}

    def watch_of(kube: Kube) -> ListWatch:
        return ListWatch(kube.rest, path, index.scope(scope), what="workspace")

    return await _with_watch(cluster, watch_of, listed, steps)


@pytest.mark.parametrize("scope", ["namespace", "cluster"])
def test_the_workspace_watch_lists_in_pages_and_reports_a_deleted_one_gone(
    cluster: LocalCluster, namespace: str, scope: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(list_watch, "PAGE_SIZE", 2)  # three workspaces: two pages
    create_all(cluster, namespace, [_workspace(f"w{i}") for i in range(3)])
    seen = asyncio.run(
        _watch_workspaces(cluster, namespace, namespace if scope == "namespace" else None)
    )
    assert seen["first"] == {"w0", "w1", "w2"}
    assert seen["last"] == {"w1", "w2"}
    assert seen["gone"] == ["w0"]


def test_holds_any_says_whether_a_namespace_has_a_preset(
    cluster: LocalCluster, namespace: str
) -> None:
    """What lets a fresh operator without presets serve claims at once
    (handlers/registrations.py, _kopf_complete_if_no_presets)."""
    path = scope_path(GROUP, VERSION, PLURAL_PRESETS, namespace)

    async def holds() -> bool:
        kube = await Kube.connect(str(cluster.kubeconfig))
        try:
            return await holds_any(kube.rest, path)
        finally:
            await kube.close()

    assert asyncio.run(holds()) is False
    create_all(cluster, namespace, [preset_manifest("one", 0)])
    assert asyncio.run(holds()) is True
