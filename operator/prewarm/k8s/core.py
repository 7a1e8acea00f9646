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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes.aio import client as kclient
from kubernetes.aio import config as kconfig
from kubernetes.aio.config.config_exception import ConfigException

JsonObject = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
JSON = "application/json"
_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

# What a request raises when the API server cannot be reached at all
# (refused, no route, DNS, TLS, a timeout): no answer, so no ApiError.
UNREACHABLE: tuple[type[BaseException], ...] = (OSError, TimeoutError, aiohttp.ClientError)


class ClusterConfigError(RuntimeError):
    """No usable way to the API server: no kubeconfig, an unknown context, a broken file."""


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

    def __init__(
        self,
        api_client: kclient.ApiClient,
        namespace: str = "default",
        request_timeout: float | None = None,
    ) -> None:
        self._api_client = api_client
        # The context's namespace (or the pod's): what kubectl's -n defaults to.
        self.namespace = namespace
        self._request_timeout = request_timeout

    @classmethod
    async def connect(
        cls,
        kubeconfig: str | None,
        in_cluster: bool,
        pool_size: int,
        context: str | None = None,
        request_timeout: float | None = None,
    ) -> Rest:
        """An explicit kubeconfig (or context) wins; else the pod's service
        account when in a pod; else the default kubeconfig (~/.kube/config).
        ClusterConfigError if none of them works."""
        configuration, namespace = await _load_configuration(kubeconfig, in_cluster, context)
        configuration.connection_pool_maxsize = pool_size
        # trust_env makes aiohttp look up ~/.netrc (in a thread) on every
        # request; the kubeconfig is the only source of credentials we use.
        configuration.client_session_kwargs = {"trust_env": False}
        return cls(kclient.ApiClient(configuration), str(namespace), request_timeout)

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
            _request_timeout=request_timeout or self._request_timeout,
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

    async def websocket(
        self, path: str, query: list[tuple[str, str]], protocols: tuple[str, ...]
    ) -> aiohttp.ClientWebSocketResponse:
        """A websocket to `path` (exec, attach) on the client's own session: its
        TLS and bearer token. A refused upgrade raises ApiError with the status."""
        _, url, headers, _, _ = await self._api_client.param_serialize(
            "GET", path, query_params=query, header_params={}, auth_settings=["BearerToken"]
        )
        if url.startswith("https://"):
            url = "wss://" + url.removeprefix("https://")
        elif url.startswith("http://"):
            url = "ws://" + url.removeprefix("http://")
        rest = self._api_client.rest_client
        if rest.pool_manager is None:
            rest.pool_manager = rest._create_pool_manager()
        try:
            return await rest.pool_manager.ws_connect(
                url, headers=headers, protocols=protocols, heartbeat=30.0, max_msg_size=0
            )
        except aiohttp.WSServerHandshakeError as error:
            raise ApiError(error.status, "", error.message or "websocket upgrade refused") from None

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


async def _load_configuration(
    kubeconfig: str | None, in_cluster: bool, context: str | None
) -> tuple[kclient.Configuration, str]:
    """The client's configuration and the context's (or the pod's) namespace,
    by `Rest.connect`'s rule; ClusterConfigError if none works."""
    configuration = kclient.Configuration()
    try:
        if in_cluster and not kubeconfig and not context:
            kconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return configuration, _pod_namespace()
        # Pass the file explicitly: the client's own default is fixed at import.
        loader = await kconfig.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig or None,
            context=context or None,
            client_configuration=configuration,
        )
    except (ConfigException, OSError, ValueError) as error:
        raise ClusterConfigError(" ".join(str(error).split()) or repr(error)) from None
    current = loader.current_context or {}
    return configuration, str((current.get("context") or {}).get("namespace") or "default")


@dataclass(frozen=True)
class Credentials:
    """How another HTTP client (kopf's) reaches the API server as `Rest` does:
    the same kubeconfig or service account, read by the same loader."""

    server: str
    ca_path: str | None = None  # files: the loader writes inline data to temporary ones
    insecure: bool = False
    certificate_path: str | None = None
    private_key_path: str | None = None
    scheme: str | None = None  # of the Authorization header: "Bearer"
    token: str | None = None
    username: str | None = None
    password: str | None = None


async def credentials(kubeconfig: str | None, in_cluster: bool) -> Credentials:
    """Read afresh on every call: an exec plugin runs again, a projected
    service-account token is read again (kopf logs in again on a 401)."""
    configuration, _ = await _load_configuration(kubeconfig, in_cluster, None)
    header = await configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
    # "Bearer TOKEN" from a kubeconfig, "bearer TOKEN" in a pod, a bare token maybe.
    scheme, _, token = header.partition(" ") if header and " " in header else ("", "", header)
    return Credentials(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        scheme=scheme or None,
        token=token or None,
        username=configuration.username or None,
        password=configuration.password or None,
    )


def _pod_namespace() -> str:
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def context_namespace(kubeconfig: str | None, context: str | None, in_cluster: bool) -> str:
    """The namespace a command defaults to without connecting (kubectl's rule):
    the context's, else the pod's in a pod, else `default`."""
    if in_cluster and not kubeconfig and not context:
        return _pod_namespace()
    try:
        contexts, current = kconfig.list_kube_config_contexts(kubeconfig or None)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError, ValueError):
        return "default"
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


def collection_path(group: str, version: str, namespace: str, plural: str) -> str:
    """/api/v1/namespaces/NS/PLURAL for the core group (""), /apis/G/V/... otherwise."""
    root = f"/apis/{group}/{version}" if group else f"/api/{version}"
    return f"{root}/namespaces/{namespace}/{plural}"


def object_path(collection: str, name: str = "", subresource: str = "") -> str:
    path = f"{collection}/{name}" if name else collection
    return f"{path}/{subresource}" if subresource else path
