"""The in-pod agent's Kubernetes API: its own pod and its own owner secret, nothing else.

Built on `k8s.core.Rest`, like the operator's client: plain JSON, every
error an `ApiError`. In a pod it uses the in-cluster config (the projected
token of `<ws>-agent`); elsewhere (tests) the kubeconfig it is given.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping

from prewarm.k8s.core import (
    MERGE_PATCH,
    ApiError,
    JsonObject,
    Rest,
    collection_path,
    object_path,
)

__all__ = ["AgentApi", "ApiError", "JsonObject"]


class AgentApi:
    def __init__(self, rest: Rest, namespace: str, pod_name: str) -> None:
        self._rest = rest
        self.namespace = namespace
        self.pod_name = pod_name
        self._pods = collection_path("", "v1", namespace, "pods")

    @classmethod
    async def connect(
        cls, namespace: str, pod_name: str, kubeconfig: str | None, in_cluster: bool
    ) -> AgentApi:
        return cls(await Rest.connect(kubeconfig, in_cluster, pool_size=4), namespace, pod_name)

    async def close(self) -> None:
        await self._rest.close()

    def _selector(self) -> tuple[str, str]:
        return ("fieldSelector", f"metadata.name={self.pod_name}")

    async def list_pod(self) -> tuple[JsonObject | None, str]:
        """(the pod or None, the list's resourceVersion to watch from)."""
        data = await self._rest.request("GET", self._pods, query=[self._selector()])
        items = list(data.get("items") or [])
        rv = str((data.get("metadata") or {}).get("resourceVersion", ""))
        return (dict(items[0]) if items else None), rv

    async def watch_pod(
        self, resource_version: str, timeout_seconds: int = 300
    ) -> AsyncIterator[tuple[str, JsonObject]]:
        """(event type, object) of one watch of the agent's own pod.

        Ends when the server closes the watch; an ERROR event (e.g. 410 Gone)
        is raised as ApiError so the caller lists again.
        """
        query = [self._selector(), ("allowWatchBookmarks", "true")]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        async for event in self._rest.watch(self._pods, query, timeout_seconds):
            yield event

    async def patch_pod_annotations(self, annotations: Mapping[str, str | None]) -> JsonObject:
        """A merge patch of the pod's annotations; None removes a key."""
        patch = {"metadata": {"annotations": dict(annotations)}}
        path = object_path(self._pods, self.pod_name)
        return await self._rest.request("PATCH", path, patch, content_type=MERGE_PATCH)

    async def read_secret_data(self, name: str) -> dict[str, bytes]:
        """The decoded data of a Secret in the pod's namespace. The values are
        credentials: never log them."""
        secrets = collection_path("", "v1", self.namespace, "secrets")
        secret = await self._rest.request("GET", object_path(secrets, name))
        data = secret.get("data") or {}
        return {str(k): base64.b64decode(v) for k, v in data.items()}
