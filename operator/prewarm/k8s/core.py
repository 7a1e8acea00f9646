"""The one way prewarm talks to the API server: connect, request, watch.

Requests go through the official client's REST layer (`kubernetes.aio`: its
auth incl. token refresh, TLS and connection pool) with paths built by the
caller, and answers are parsed as plain JSON: prewarm works on dicts, and
skipping the generated methods' argument validation and models keeps the hot
paths (create, patch) cheap. Every non-2xx answer, and every ERROR event of a
watch, becomes an `ApiError`, so no caller imports `kubernetes`. The
operator's client, the leader election and the in-pod agent all use this.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from kubernetes.aio import client as kclient
from kubernetes.aio import config as kconfig

JsonObject = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
JSON = "application/json"


# How the RBAC authorizer words a denial: `pods is forbidden: User "..." cannot
# create resource "pods" in API group "" in the namespace "x"`.
_RBAC_DENIAL = re.compile(r'cannot [a-z]+ resource "')


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
    def forbidden_by_rbac(self) -> bool:
        """The requester (the operator) lacks a permission: its installation's
        fault, not the object's; fixed by granting it, then a retry works."""
        return self.status == 403 and _RBAC_DENIAL.search(self.message) is not None

    @property
    def rejected(self) -> bool:
        """A verdict on the object itself that no retry can fix: invalid (400,
        422) or denied by admission (PodSecurity, a policy, a webhook: 403).
        Not a missing permission, a full quota, a conflict, throttling (429)
        or a server error (5xx)."""
        if self.status in (400, 422):
            return True
        return self.status == 403 and not self.quota_exceeded and not self.forbidden_by_rbac


async def response_json(response: Any) -> JsonObject:
    body = await response.read()
    status = int(response.status)
    response.release()
    data: JsonObject = json.loads(body) if body else {}
    if status >= 400:
        raise ApiError(status, str(data.get("reason", "")), str(data.get("message", body[:500])))
    return data


class Rest:
    """One API server connection (pool) and the two things done with it."""

    def __init__(self, api_client: kclient.ApiClient) -> None:
        self._api_client = api_client

    @classmethod
    async def connect(cls, kubeconfig: str | None, in_cluster: bool, pool_size: int) -> Rest:
        """An explicit kubeconfig wins; else the pod's service account when in
        a pod; else the default kubeconfig (~/.kube/config)."""
        configuration = kclient.Configuration()
        if in_cluster and not kubeconfig:
            kconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            # Pass the file explicitly: the client's own default is fixed at import.
            await kconfig.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig or None, client_configuration=configuration
            )
        configuration.connection_pool_maxsize = pool_size
        # trust_env makes aiohttp look up ~/.netrc (in a thread) on every
        # request; the kubeconfig is the only source of credentials we use.
        configuration.client_session_kwargs = {"trust_env": False}
        return cls(kclient.ApiClient(configuration))

    @property
    def api_client(self) -> kclient.ApiClient:
        """The official client underneath, for benchmarks that compare with it."""
        return self._api_client

    async def close(self) -> None:
        await self._api_client.close()  # type: ignore[no-untyped-call]

    async def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        query: list[tuple[str, str]] | None,
        content_type: str,
        request_timeout: float | None = None,
    ) -> Any:
        method, url, headers, _, _ = await self._api_client.param_serialize(
            method,
            path,
            query_params=query,
            header_params={"Accept": JSON, "Content-Type": content_type},
            auth_settings=["BearerToken"],
        )
        answer = await self._api_client.call_api(
            method,
            url,
            headers,
            body=None if body is None else dict(body),
            _request_timeout=request_timeout,
            _preload_content=False,
        )
        return answer.response

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = JSON,
    ) -> JsonObject:
        """One request, answered as parsed JSON (ApiError for any error status)."""
        return await response_json(await self._send(method, path, body, query, content_type))

    async def watch(
        self, path: str, query: list[tuple[str, str]], timeout_s: int
    ) -> AsyncIterator[tuple[str, JsonObject]]:
        """(event type, object) pairs of one watch of the collection at `path`.

        The server ends the watch after `timeout_s` and the iteration simply
        stops; callers start another from the last resourceVersion. Without
        a server timeout the client's own (5 minutes in all) would cut the
        stream with an error instead. An ERROR event (e.g. 410 Gone) is raised.
        """
        params = [*query, ("watch", "true"), ("timeoutSeconds", str(timeout_s))]
        response = await self._send(
            "GET", path, None, params, JSON, request_timeout=float(timeout_s + 30)
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


def collection_path(group: str, version: str, namespace: str, plural: str) -> str:
    """/api/v1/namespaces/NS/PLURAL for the core group (""), /apis/G/V/... otherwise."""
    root = f"/apis/{group}/{version}" if group else f"/api/{version}"
    return f"{root}/namespaces/{namespace}/{plural}"


def object_path(collection: str, name: str = "", subresource: str = "") -> str:
    path = f"{collection}/{name}" if name else collection
    return f"{path}/{subresource}" if subresource else path
