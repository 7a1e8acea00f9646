"""The in-pod agent's Kubernetes API: its own pod and its own owner secret, nothing else.

Built on `k8s.core.Rest`, like the operator's client: plain JSON, every
error an `ApiError`. In a pod it uses the in-cluster config (the projected
token of `<ws>-agent`); elsewhere (tests) the kubeconfig it is given.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import aiohttp

from prewarm.k8s.core import (
    MERGE_PATCH,
    ApiError,
    JsonObject,
    Rest,
    collection_path,
    object_path,
)

__all__ = ["AgentApi", "ApiError", "ExecStatus", "JsonObject"]

# The exec subresource's channel protocols: v5 can close stdin; v4 is the fallback.
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
_STDIN, _STDOUT, _STDERR, _ERROR, _CLOSE = 0, 1, 2, 3, 255


@dataclass(frozen=True)
class ExecStatus:
    """How a command run through the exec subresource ended.

    `exit_code` is None when the command did not run to an exit status the
    kubelet could report: it could not start (`message` says why, e.g. no such
    file) or the stream ended without a status (the container or the
    connection went away mid-run: `message` is empty)."""

    exit_code: int | None
    message: str = ""


def parse_exec_status(raw: bytes) -> ExecStatus:
    """The Status object the kubelet sends on the error channel at the end."""
    try:
        status = json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError:
        return ExecStatus(None, raw.decode("utf-8", errors="replace")[:300])
    if status.get("status") == "Success":
        return ExecStatus(0)
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return ExecStatus(int(cause.get("message", "")))
                except ValueError:
                    break
    return ExecStatus(None, str(status.get("message") or status.get("reason") or "")[:300])


class AgentApi:
    def __init__(self, rest: Rest, namespace: str, pod_name: str) -> None:
        self._rest = rest
        self.namespace = namespace
        self.pod_name = pod_name
        self._pods = collection_path("", "v1", namespace, "pods")

    @classmethod
    async def connect(
        cls,
        namespace: str,
        pod_name: str,
        kubeconfig: str | None,
        in_cluster: bool,
        pool_size: int = 4,
    ) -> AgentApi:
        rest = await Rest.connect(kubeconfig, in_cluster, pool_size=pool_size)
        return cls(rest, namespace, pod_name)

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

    async def exec_in_container(
        self,
        container: str,
        command: list[str],
        stdin: bytes,
        on_output: Callable[[bytes], None],
    ) -> ExecStatus:
        """Run `command` in `container` of the agent's own pod (the exec
        subresource, needing `create` on pods/exec for that pod), with `stdin`
        written to it and its stdout and stderr passed to `on_output` as they
        come. `stdin` never appears in a URL, so not in the API server's audit
        log; `command` does (it must hold nothing secret). ApiError when the
        API server refuses the exec; cancelling closes the stream (the command
        itself is not killed by that)."""
        path = object_path(self._pods, self.pod_name, "exec")
        query = [("container", container), ("stdin", "true"), ("stdout", "true")]
        query += [("stderr", "true"), *(("command", arg) for arg in command)]
        ws = await self._rest.websocket(path, query, EXEC_PROTOCOLS)
        status = b""
        try:
            await ws.send_bytes(bytes([_STDIN]) + stdin)
            if ws.protocol == EXEC_PROTOCOLS[0]:
                await ws.send_bytes(bytes([_CLOSE, _STDIN]))
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.BINARY or not message.data:
                    continue
                channel, data = message.data[0], message.data[1:]
                if channel in (_STDOUT, _STDERR) and data:
                    on_output(data)
                elif channel == _ERROR:
                    status += data
        finally:
            await ws.close()
        return parse_exec_status(status) if status else ExecStatus(None)

    async def read_secret_data(self, name: str) -> dict[str, bytes]:
        """The decoded data of a Secret in the pod's namespace. The values are
        credentials: never log them."""
        secrets = collection_path("", "v1", self.namespace, "secrets")
        secret = await self._rest.request("GET", object_path(secrets, name))
        data = secret.get("data") or {}
        return {str(k): base64.b64decode(v) for k, v in data.items()}
