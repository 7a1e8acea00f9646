"""The operator's Kubernetes API: the few calls it makes, by name.

Built on `k8s.core.Rest` (one request/watch core for the operator, its
leader election and the agent); every non-2xx answer is an `ApiError`, so
callers never import `kubernetes`.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

from prewarm.api.constants import (
    GROUP,
    PLURAL_PREBUILT_WORKSPACES,
    PLURAL_PRESETS,
    PLURAL_WORKSPACE_CLAIMS,
    VERSION,
)
from prewarm.k8s.core import (
    MERGE_PATCH,
    UNREACHABLE,
    ApiError,
    ClusterConfigError,
    JsonObject,
    Rest,
    collection_path,
    context_namespace,
    object_path,
)

__all__ = [
    "MERGE_PATCH",
    "UNREACHABLE",
    "ApiError",
    "ClusterConfigError",
    "JsonObject",
    "Kube",
    "context_namespace",
]


class Kube:
    """The operator's Kubernetes API, one connection pool for the process."""

    def __init__(self, rest: Rest, instance: str = "") -> None:
        self.rest = rest
        # Who posts this process's Events (reportingInstance): the pod's name.
        self.instance = instance or socket.gethostname()

    @classmethod
    async def connect(
        cls,
        kubeconfig: str | None = None,
        in_cluster: bool = False,
        pool_size: int = 64,
        instance: str = "",
        context: str | None = None,
        request_timeout: float | None = None,
    ) -> Kube:
        """See `Rest.connect`: an explicit kubeconfig, else the pod's service account."""
        rest = await Rest.connect(kubeconfig, in_cluster, pool_size, context, request_timeout)
        return cls(rest, instance)

    @property
    def namespace(self) -> str:
        """The namespace of the kubeconfig's context (or the pod's): the CLI's default."""
        return self.rest.namespace

    async def close(self) -> None:
        await self.rest.close()

    async def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> JsonObject:
        return await self.rest.request(method, path, body, query, content_type)

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
        """(event type, object) pairs of one watch of `plural` in `namespace` (see Rest.watch)."""
        query = [("resourceVersion", resource_version)] if resource_version else []
        async for event in self.rest.watch(_custom(namespace, plural), query, timeout_s):
            yield event

    # --- core ---------------------------------------------------------------------------

    async def create_pod(
        self, namespace: str, body: Mapping[str, Any], dry_run: bool = False
    ) -> JsonObject:
        query = [("dryRun", "All")] if dry_run else None
        return await self._request("POST", _core(namespace, "pods"), body, query)

    async def get_pod(self, namespace: str, name: str) -> JsonObject:
        return await self._request("GET", _core(namespace, "pods", name))

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
    return object_path(collection_path(GROUP, VERSION, namespace, plural), name, subresource)


def _core(namespace: str, plural: str, name: str = "") -> str:
    return object_path(collection_path("", "v1", namespace, plural), name)
