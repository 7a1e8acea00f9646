"""A thin async adapter over the official client (`kubernetes.aio`).

Requests go through the generated `*_without_preload_content` calls and are
parsed as plain JSON: the operator works on dicts, and skipping the generated
models' deserialisation keeps the hot paths (create, patch) cheap. Every
non-2xx answer becomes an `ApiError` so callers never import `kubernetes`.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from kubernetes.aio import client as kclient
from kubernetes.aio import config as kconfig

from prewarm.api.constants import (
    GROUP,
    PLURAL_PREBUILT_WORKSPACES,
    PLURAL_PRESETS,
    PLURAL_WORKSPACE_CLAIMS,
    VERSION,
)

JsonObject = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def rejected(self) -> bool:
        """A 4xx that no retry can fix: the request itself is invalid or forbidden."""
        return self.status in (400, 403, 422)


async def response_json(response: Any) -> JsonObject:
    body = await response.read()
    status = int(response.status)
    response.release()
    data: JsonObject = json.loads(body) if body else {}
    if status >= 400:
        raise ApiError(status, str(data.get("reason", "")), str(data.get("message", body[:500])))
    return data


class Kube:
    """The operator's Kubernetes API, one connection pool for the process."""

    def __init__(self, api_client: kclient.ApiClient) -> None:
        self._api_client = api_client
        self._core = kclient.CoreV1Api(api_client)
        self._custom = kclient.CustomObjectsApi(api_client)
        self._rbac = kclient.RbacAuthorizationV1Api(api_client)

    @classmethod
    async def connect(cls, pool_size: int = 64) -> Kube:
        configuration = kclient.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            kconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            # Read KUBECONFIG now: the client's default is fixed when it is imported.
            await kconfig.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
            )
        configuration.connection_pool_maxsize = pool_size
        # trust_env makes aiohttp look up ~/.netrc (in a thread) on every
        # request; the kubeconfig is the only source of credentials we use.
        configuration.client_session_kwargs = {"trust_env": False}
        return cls(kclient.ApiClient(configuration))

    @property
    def api_client(self) -> kclient.ApiClient:
        return self._api_client

    async def close(self) -> None:
        await self._api_client.close()  # type: ignore[no-untyped-call]

    # --- prewarm.dev custom objects -------------------------------------------------

    async def create_workspace(self, namespace: str, body: Mapping[str, Any]) -> JsonObject:
        return await response_json(
            await self._custom.create_namespaced_custom_object_without_preload_content(
                GROUP, VERSION, namespace, PLURAL_PREBUILT_WORKSPACES, dict(body)
            )
        )

    async def patch_workspace(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> JsonObject:
        """A merge patch; put metadata.resourceVersion in it to make it conditional."""
        return await response_json(
            await self._custom.patch_namespaced_custom_object_without_preload_content(
                GROUP,
                VERSION,
                namespace,
                PLURAL_PREBUILT_WORKSPACES,
                name,
                dict(patch),
                _content_type=MERGE_PATCH,
            )
        )

    async def patch_workspace_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> JsonObject:
        return await response_json(
            await self._custom.patch_namespaced_custom_object_status_without_preload_content(
                GROUP,
                VERSION,
                namespace,
                PLURAL_PREBUILT_WORKSPACES,
                name,
                dict(patch),
                _content_type=MERGE_PATCH,
            )
        )

    async def delete_workspace(
        self, namespace: str, name: str, resource_version: str | None = None
    ) -> bool:
        """Delete unless it changed since `resource_version` was read; False if it had.

        The precondition is what makes deleting a pool instance safe against a
        claim that takes it at the same moment: the claim's write changes the
        resourceVersion, so this delete fails with 409 instead.
        """
        options: JsonObject = {"propagationPolicy": "Background"}
        if resource_version:
            options["preconditions"] = {"resourceVersion": resource_version}
        try:
            await response_json(
                await self._custom.delete_namespaced_custom_object_without_preload_content(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL_PREBUILT_WORKSPACES,
                    name,
                    body=options,  # type: ignore[arg-type]  # plain JSON serialises as is
                )
            )
        except ApiError as error:
            if error.not_found:
                return True
            if error.conflict:
                return False
            raise
        return True

    async def patch_preset_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> JsonObject:
        return await response_json(
            await self._custom.patch_namespaced_custom_object_status_without_preload_content(
                GROUP,
                VERSION,
                namespace,
                PLURAL_PRESETS,
                name,
                dict(patch),
                _content_type=MERGE_PATCH,
            )
        )

    async def patch_claim_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> JsonObject:
        return await response_json(
            await self._custom.patch_namespaced_custom_object_status_without_preload_content(
                GROUP,
                VERSION,
                namespace,
                PLURAL_WORKSPACE_CLAIMS,
                name,
                dict(patch),
                _content_type=MERGE_PATCH,
            )
        )

    async def create_claim(self, namespace: str, body: Mapping[str, Any]) -> JsonObject:
        return await response_json(
            await self._custom.create_namespaced_custom_object_without_preload_content(
                GROUP, VERSION, namespace, PLURAL_WORKSPACE_CLAIMS, dict(body)
            )
        )

    async def list_objects(self, plural: str, namespace: str | None = None) -> list[JsonObject]:
        """One list call, for the CLI; the operator itself reads its indexes."""
        if namespace:
            response = await self._custom.list_namespaced_custom_object_without_preload_content(
                GROUP, VERSION, namespace, plural
            )
        else:
            response = await self._custom.list_cluster_custom_object_without_preload_content(
                GROUP, VERSION, plural
            )
        return list((await response_json(response)).get("items") or [])

    async def patch_preset(self, namespace: str, name: str, patch: Mapping[str, Any]) -> JsonObject:
        return await response_json(
            await self._custom.patch_namespaced_custom_object_without_preload_content(
                GROUP,
                VERSION,
                namespace,
                PLURAL_PRESETS,
                name,
                dict(patch),
                _content_type=MERGE_PATCH,
            )
        )

    async def watch_objects(
        self, plural: str, namespace: str, resource_version: str = ""
    ) -> AsyncIterator[tuple[str, JsonObject]]:
        """(event type, object) pairs of one watch of `plural` in `namespace`."""
        response = await self._custom.list_namespaced_custom_object_without_preload_content(
            GROUP,
            VERSION,
            namespace,
            plural,
            watch=True,
            resource_version=resource_version or None,
            allow_watch_bookmarks=False,
        )
        try:
            if int(response.status) >= 400:
                await response_json(response)
            async for line in response.content:
                if line.strip():
                    event = json.loads(line)
                    yield str(event.get("type", "")), dict(event.get("object") or {})
        finally:
            response.release()

    # --- core ---------------------------------------------------------------------------

    async def create_pod(
        self, namespace: str, body: Mapping[str, Any], dry_run: bool = False
    ) -> JsonObject:
        return await response_json(
            await self._core.create_namespaced_pod_without_preload_content(
                namespace,
                dict(body),  # type: ignore[arg-type]  # plain JSON serialises as is
                dry_run="All" if dry_run else None,
            )
        )

    async def patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> JsonObject:
        return await response_json(
            await self._core.patch_namespaced_pod_without_preload_content(
                name, namespace, dict(patch), _content_type=MERGE_PATCH
            )
        )

    async def create_namespaced(self, manifest: Mapping[str, Any]) -> JsonObject | None:
        """Create a ServiceAccount, Role, RoleBinding or Secret; None if it exists already."""
        namespace = manifest["metadata"]["namespace"]
        body: Any = dict(manifest)  # plain JSON serialises as is
        kind = manifest["kind"]
        call: Any
        if kind == "ServiceAccount":
            call = self._core.create_namespaced_service_account_without_preload_content
        elif kind == "Secret":
            call = self._core.create_namespaced_secret_without_preload_content
        elif kind == "Role":
            call = self._rbac.create_namespaced_role_without_preload_content
        elif kind == "RoleBinding":
            call = self._rbac.create_namespaced_role_binding_without_preload_content
        else:
            raise ValueError(f"create_namespaced does not handle {kind}")
        try:
            return await response_json(await call(namespace, body))
        except ApiError as error:
            if error.conflict:
                return None
            raise

    async def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        await response_json(
            await self._core.patch_namespaced_secret_without_preload_content(
                name, namespace, dict(patch), _content_type=MERGE_PATCH
            )
        )

    async def get_secret(self, namespace: str, name: str) -> JsonObject:
        return await response_json(
            await self._core.read_namespaced_secret_without_preload_content(name, namespace)
        )

    async def create_event(self, namespace: str, body: Mapping[str, Any]) -> JsonObject:
        return await response_json(
            await self._core.create_namespaced_event_without_preload_content(
                namespace,
                dict(body),  # type: ignore[arg-type]  # plain JSON serialises as is
            )
        )
