"""Leader election with a coordination.k8s.io Lease (the client-go protocol).

Every replica watches and indexes; only the holder of the Lease reconciles.
Taking over an expired Lease and renewing one's own are conditional writes
(resourceVersion), so two replicas can never both believe they lead.

Expiry is judged as client-go judges it: not by comparing the holder's
`renewTime` with this replica's clock (clock skew between nodes would steal
or freeze leadership), but by how long this replica has itself observed the
Lease unchanged, on its own monotonic clock. A leader that stops releases
the Lease (no holder), so a stand-by takes over at once, not a lease later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prewarm.api.timestamps import micro_time
from prewarm.k8s.client import Kube
from prewarm.k8s.core import ApiError, JsonObject, collection_path, object_path

log = logging.getLogger("prewarm.lease")


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int = 15,
        renew_every: float = 3.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rest = kube.rest
        self._leases = collection_path("coordination.k8s.io", "v1", namespace, "leases")
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_every = renew_every
        # The wall clock only writes renewTime/acquireTime (for people and
        # other tools); every decision uses the monotonic clock.
        self._clock = clock
        self._monotonic = monotonic
        self.leading = asyncio.Event()
        self.lost = asyncio.Event()
        self._renewed_at: float | None = None
        # The Lease's spec as last seen, and when (monotonic) it was first seen so.
        self._observed: str | None = None
        self._observed_at = 0.0
        self._resource_version = ""

    def confident(self) -> bool:
        """Leading, and renewed within the lease duration: safe to act now.

        While the API server is unreachable the lease cannot be renewed, but
        nobody else can take it either; this replica only holds back its
        writes (they would fail anyway) and goes on once a renewal succeeds.
        """
        return (
            self.leading.is_set()
            and not self.lost.is_set()
            and self._renewed_at is not None
            and self._monotonic() - self._renewed_at < self.lease_seconds
        )

    def _body(
        self, holder: str, acquired: str, transitions: int, rv: str | None, seconds: int
    ) -> JsonObject:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if rv:
            meta["resourceVersion"] = rv
        now = micro_time(self._clock())
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": seconds,
                "acquireTime": acquired or now,
                "renewTime": now,
                "leaseTransitions": transitions,
            },
        }

    def _observe(self, lease: JsonObject) -> JsonObject:
        """Remember when the Lease last changed, as this replica saw it."""
        spec: JsonObject = lease.get("spec") or {}
        self._resource_version = str(lease.get("metadata", {}).get("resourceVersion", ""))
        record = json.dumps(spec, sort_keys=True)
        if record != self._observed:
            self._observed = record
            self._observed_at = self._monotonic()
        return spec

    def _held_by_another(self, spec: JsonObject) -> bool:
        """Another replica holds it and this one has not yet observed it
        unchanged for its duration (renewTime itself is never compared)."""
        holder = spec.get("holderIdentity") or ""
        if not holder or holder == self.identity:
            return False
        duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
        return self._monotonic() - self._observed_at < duration

    async def try_acquire_or_renew(self) -> bool:
        """One round of the protocol; True if this replica holds the Lease afterwards."""
        try:
            lease = await self._rest.request("GET", object_path(self._leases, self.name))
        except ApiError as error:
            if not error.not_found:
                raise
            body = self._body(self.identity, "", 0, None, self.lease_seconds)
            try:
                await self._rest.request("POST", self._leases, body)
                return True
            except ApiError as create_error:
                if create_error.conflict:
                    return False  # another replica created it first
                raise
        spec = self._observe(lease)
        if self._held_by_another(spec):
            return False
        holder = spec.get("holderIdentity") or ""
        transitions = int(spec.get("leaseTransitions") or 0) + (holder != self.identity)
        acquired = spec.get("acquireTime", "") if holder == self.identity else ""
        body = self._body(
            self.identity, acquired, transitions, self._resource_version, self.lease_seconds
        )
        try:
            await self._rest.request("PUT", object_path(self._leases, self.name), body)
        except ApiError as error:
            if error.conflict:
                return False
            raise
        return True

    async def release(self) -> bool:
        """Give the Lease up if this replica holds it (on shutdown): no holder and a
        1-second duration, as client-go's ReleaseOnCancel, so a stand-by takes
        over at once. A conditional write: it never clears another's Lease."""
        if not self.leading.is_set() or self.lost.is_set():
            return False
        self.leading.clear()
        self._renewed_at = None
        path = object_path(self._leases, self.name)
        lease = await self._rest.request("GET", path)
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return False
        rv = str(lease["metadata"]["resourceVersion"])
        transitions = int(spec.get("leaseTransitions") or 0)
        try:
            await self._rest.request("PUT", path, self._body("", "", transitions, rv, 1))
        except ApiError as error:
            if error.conflict:
                return False
            raise
        log.info("released leadership (lease %s/%s)", self.namespace, self.name)
        return True

    async def _wait_for_change(self) -> None:
        """A stand-by's pause between two rounds: `renew_every`, or less when the
        Lease changes (a release is taken over at once, not a round later)."""
        query = [("fieldSelector", f"metadata.name={self.name}")]
        if self._resource_version:
            query.append(("resourceVersion", self._resource_version))
        timeout = max(1, int(self.renew_every + 0.999))

        async def first_event() -> None:
            events = self._rest.watch(self._leases, query, timeout)
            async with contextlib.aclosing(events):  # type: ignore[type-var]
                async for _ in events:
                    return

        try:
            await asyncio.wait_for(first_event(), self.renew_every)
        except (TimeoutError, ApiError, OSError):
            return
        except Exception:  # e.g. aiohttp's client errors: just wait the round out
            await asyncio.sleep(self.renew_every)

    async def run(self) -> None:
        """Acquire, then keep renewing. Leadership is lost (`lost` set) only when
        the Lease is seen held by another replica, not when the API server is
        merely unreachable: a restart of the API server must not cost a restart
        of the operator."""
        while True:
            try:
                held = await self.try_acquire_or_renew()
            except (TimeoutError, ApiError, OSError) as error:
                log.warning("lease %s/%s: %s", self.namespace, self.name, error)
                await asyncio.sleep(self.renew_every)
                continue
            if held:
                self._renewed_at = self._monotonic()
                if not self.leading.is_set():
                    log.info("acquired leadership (lease %s/%s)", self.namespace, self.name)
                    self.leading.set()
            elif self.leading.is_set():
                log.error(
                    "lost leadership (lease %s/%s is held by another replica)",
                    self.namespace,
                    self.name,
                )
                self.lost.set()
                return
            if self.leading.is_set():
                await asyncio.sleep(self.renew_every)
            else:
                await self._wait_for_change()


async def stop_and_release(elector: LeaderElector, tasks: list[asyncio.Task[Any]]) -> None:
    """Shutdown: stop the elector and the work first (bounded), then release the
    Lease, so no write of this replica follows the next leader's first."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=5)
    with contextlib.suppress(TimeoutError, ApiError, OSError):
        await asyncio.wait_for(elector.release(), 5)
