"""Leader election with a coordination.k8s.io Lease (the client-go protocol).

Every replica watches and indexes; only the holder of the Lease reconciles.
Taking over an expired Lease and renewing one's own are conditional writes
(resourceVersion), so two replicas can never both believe they lead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from prewarm.api.timestamps import micro_time, parse_time
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
    ) -> None:
        self._rest = kube.rest
        self._leases = collection_path("coordination.k8s.io", "v1", namespace, "leases")
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_every = renew_every
        self._clock = clock
        self.leading = asyncio.Event()
        self.lost = asyncio.Event()
        self._renewed_at: datetime | None = None

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
            and self._clock() - self._renewed_at < timedelta(seconds=self.lease_seconds)
        )

    def _body(self, acquired: str, transitions: int, rv: str | None) -> JsonObject:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if rv:
            meta["resourceVersion"] = rv
        now = micro_time(self._clock())
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.lease_seconds,
                "acquireTime": acquired or now,
                "renewTime": now,
                "leaseTransitions": transitions,
            },
        }

    async def try_acquire_or_renew(self) -> bool:
        """One round of the protocol; True if this replica holds the Lease afterwards."""
        try:
            lease = await self._rest.request("GET", object_path(self._leases, self.name))
        except ApiError as error:
            if not error.not_found:
                raise
            try:
                await self._rest.request("POST", self._leases, self._body("", 0, None))
                return True
            except ApiError as create_error:
                if create_error.conflict:
                    return False  # another replica created it first
                raise
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
        duration = timedelta(seconds=int(spec.get("leaseDurationSeconds") or self.lease_seconds))
        expired = renewed is None or renewed + duration < self._clock()
        if holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (holder != self.identity)
        acquired = spec.get("acquireTime", "") if holder == self.identity else ""
        try:
            await self._rest.request(
                "PUT",
                object_path(self._leases, self.name),
                self._body(acquired, transitions, lease["metadata"]["resourceVersion"]),
            )
        except ApiError as error:
            if error.conflict:
                return False
            raise
        return True

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
                self._renewed_at = self._clock()
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
            await asyncio.sleep(self.renew_every)
