"""The in-pod agent's Kubernetes API: its own pod and its own owner secret, nothing else.

Same conventions as `client.Kube`: the official asyncio client, the
`*_without_preload_content` calls, plain JSON, every error an `ApiError`.
In a pod it uses the in-cluster config (the projected token of `<ws>-agent`);
elsewhere (tests) the kubeconfig named by KUBECONFIG.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Mapping

from kubernetes.aio import client as kclient
from kubernetes.aio import config as kconfig

from prewarm.k8s.client import MERGE_PATCH, ApiError, JsonObject, response_json

__all__ = ["AgentApi", "ApiError", "JsonObject"]


class AgentApi:
    def __init__(self, api_client: kclient.ApiClient, namespace: str, pod_name: str) -> None:
        self._api_client = api_client
        self._core = kclient.CoreV1Api(api_client)
        self.namespace = namespace
        self.pod_name = pod_name

    @classmethod
    async def connect(cls, namespace: str, pod_name: str) -> AgentApi:
        configuration = kclient.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            kconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await kconfig.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.connection_pool_maxsize = 4
        return cls(kclient.ApiClient(configuration), namespace, pod_name)

    async def close(self) -> None:
        await self._api_client.close()  # type: ignore[no-untyped-call]

    def _selector(self) -> str:
        return f"metadata.name={self.pod_name}"

    async def list_pod(self) -> tuple[JsonObject | None, str]:
        """(the pod or None, the list's resourceVersion to watch from)."""
        data = await response_json(
            await self._core.list_namespaced_pod_without_preload_content(
                self.namespace, field_selector=self._selector()
            )
        )
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
        response = await self._core.list_namespaced_pod_without_preload_content(
            self.namespace,
            field_selector=self._selector(),
            watch=True,
            resource_version=resource_version or None,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout_seconds,
            _request_timeout=(10.0, float(timeout_seconds + 30)),
        )
        try:
            if int(response.status) >= 400:
                await response_json(response)
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind = str(event.get("type", ""))
                obj = dict(event.get("object") or {})
                if kind == "ERROR":
                    raise ApiError(
                        int(obj.get("code") or 500),
                        str(obj.get("reason", "")),
                        str(obj.get("message", "")),
                    )
                yield kind, obj
        finally:
            response.release()

    async def patch_pod_annotations(self, annotations: Mapping[str, str | None]) -> JsonObject:
        """A merge patch of the pod's annotations; None removes a key."""
        patch = {"metadata": {"annotations": dict(annotations)}}
        return await response_json(
            await self._core.patch_namespaced_pod_without_preload_content(
                self.pod_name, self.namespace, patch, _content_type=MERGE_PATCH
            )
        )

    async def read_secret_data(self, name: str) -> dict[str, bytes]:
        """The decoded data of a Secret in the pod's namespace. The values are
        credentials: never log them."""
        secret = await response_json(
            await self._core.read_namespaced_secret_without_preload_content(name, self.namespace)
        )
        data = secret.get("data") or {}
        return {str(k): base64.b64decode(v) for k, v in data.items()}
