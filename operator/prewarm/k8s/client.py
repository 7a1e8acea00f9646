"""A thin async adapter over the official client (`kubernetes.aio`).

Requests go through the client's REST layer (its auth, TLS and connection
pool) with paths built here, and answers are parsed as plain JSON: the
operator works on dicts, and skipping the generated methods' argument
validation and models keeps the hot paths (create, patch) cheap. Only the
watch uses a generated call. Every non-2xx answer becomes an `ApiError` so
callers never import `kubernetes`.
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
    def quota_exceeded(self) -> bool:
        """A ResourceQuota is full: 403 like a forbidden request, but it passes
        when something else in the namespace goes away, so retry later."""
        return self.status == 403 and "exceeded quota" in self.message

    @property
    def rejected(self) -> bool:
        """A 4xx that no retry can fix: the request itself is invalid or forbidden."""
        return self.status in (400, 403, 422) and not self.quota_exceeded


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
        self._custom = kclient.CustomObjectsApi(api_client)

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

    async def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> JsonObject:
        """One request through the client's REST layer, answered as parsed JSON.

        The generated API methods validate every argument with pydantic on each
        call (11 % of the operator's samples while converging, docs/benchmarks.md);
        our paths are fixed, so we build them here and keep only what the client
        adds: authentication (incl. token refresh), TLS and the connection pool.
        """
        method, url, headers, _, _ = await self._api_client.param_serialize(
            method,
            path,
            query_params=query,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            auth_settings=["BearerToken"],
        )
        answer = await self._api_client.call_api(
            method, url, headers, body=None if body is None else dict(body), _preload_content=False
        )
        return await response_json(answer.response)

    # --- prewarm.dev custom objects -------------------------------------------------

    async def create_workspace(self, namespace: str, body: Mapping[str, Any]) -> JsonObject:
        return await self._request("POST", _custom(namespace, PLURAL_PREBUILT_WORKSPACES), body)

    async def patch_workspace(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> JsonObject:
        """A merge patch; put metadata.resourceVersion in it to make it conditional."""
        return await self._merge(_custom(namespace, PLURAL_PREBUILT_WORKSPACES, name), patch)

    async def patch_workspace_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> JsonObject:
        path = _custom(namespace, PLURAL_PREBUILT_WORKSPACES, name, "status")
        return await self._merge(path, patch)

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
        path = _custom(namespace, PLURAL_PREBUILT_WORKSPACES, name)
        try:
            await self._request("DELETE", path, options)
        except ApiError as error:
            if error.not_found:
                return True
            if error.conflict:
                return False
            raise
        return True

    async def patch_preset(self, namespace: str, name: str, patch: Mapping[str, Any]) -> JsonObject:
        return await self._merge(_custom(namespace, PLURAL_PRESETS, name), patch)

    async def patch_preset_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> JsonObject:
        return await self._merge(_custom(namespace, PLURAL_PRESETS, name, "status"), patch)

    async def create_claim(self, namespace: str, body: Mapping[str, Any]) -> JsonObject:
        return await self._request("POST", _custom(namespace, PLURAL_WORKSPACE_CLAIMS), body)

    async def patch_claim_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> JsonObject:
        return await self._merge(_custom(namespace, PLURAL_WORKSPACE_CLAIMS, name, "status"), patch)

    async def list_objects(self, plural: str, namespace: str | None = None) -> list[JsonObject]:
        """One list call, for the CLI; the operator itself reads its indexes."""
        path = _custom(namespace, plural) if namespace else f"/apis/{GROUP}/{VERSION}/{plural}"
        return list((await self._request("GET", path)).get("items") or [])

    async def _merge(self, path: str, patch: Mapping[str, Any]) -> JsonObject:
        return await self._request("PATCH", path, patch, content_type=MERGE_PATCH)

    async def watch_objects(
        self, plural: str, namespace: str, resource_version: str = "", timeout_s: int = 240
    ) -> AsyncIterator[tuple[str, JsonObject]]:
        """(event type, object) pairs of one watch of `plural` in `namespace`.

        The server ends the watch after `timeout_s` and the iteration simply
        stops; callers start another from the last resourceVersion. Without
        a server timeout the client's own (5 minutes in all) would cut the
        stream with an error instead.
        """
        response = await self._custom.list_namespaced_custom_object_without_preload_content(
            GROUP,
            VERSION,
            namespace,
            plural,
            watch=True,
            resource_version=resource_version or None,
            allow_watch_bookmarks=False,
            timeout_seconds=timeout_s,
            _request_timeout=timeout_s + 30,
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
        query = [("dryRun", "All")] if dry_run else None
        return await self._request("POST", _core(namespace, "pods"), body, query)

    async def patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> JsonObject:
        return await self._merge(_core(namespace, "pods", name), patch)

    async def create_namespaced(self, manifest: Mapping[str, Any]) -> JsonObject | None:
        """Create a ServiceAccount, Role, RoleBinding or Secret; None if it exists already."""
        namespace = manifest["metadata"]["namespace"]
        kind = manifest["kind"]
        if kind == "ServiceAccount":
            path = _core(namespace, "serviceaccounts")
        elif kind == "Secret":
            path = _core(namespace, "secrets")
        elif kind in ("Role", "RoleBinding"):
            path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/{kind.lower()}s"
        else:
            raise ValueError(f"create_namespaced does not handle {kind}")
        try:
            return await self._request("POST", path, manifest)
        except ApiError as error:
            if error.conflict:
                return None
            raise

    async def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        await self._merge(_core(namespace, "secrets", name), patch)

    async def get_secret(self, namespace: str, name: str) -> JsonObject:
        return await self._request("GET", _core(namespace, "secrets", name))

    async def create_event(self, namespace: str, body: Mapping[str, Any]) -> JsonObject:
        return await self._request("POST", _core(namespace, "events"), body)


def _custom(namespace: str, plural: str, name: str = "", subresource: str = "") -> str:
    return _path(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}", name, subresource)


def _core(namespace: str, plural: str, name: str = "") -> str:
    return _path(f"/api/v1/namespaces/{namespace}/{plural}", name, "")


def _path(collection: str, name: str, subresource: str) -> str:
    path = f"{collection}/{name}" if name else collection
    return f"{path}/{subresource}" if subresource else path
