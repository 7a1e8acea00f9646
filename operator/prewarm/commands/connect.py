"""The CLI's ways to the API server and the ledger: flags first, then the
settings (KUBECONFIG, the pod's service account, PREWARM_DATABASE_URL)."""

from __future__ import annotations

from dataclasses import dataclass

from prewarm.k8s.client import Kube, context_namespace
from prewarm.ledger.repository import Ledger
from prewarm.settings import ClusterAccess

# A CLI request that takes longer than this finds the API server unreachable.
REQUEST_TIMEOUT_S = 30.0
# PostgreSQL down answers at once (refused) or after this (no answer).
LEDGER_CONNECT_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Target:
    """`--kubeconfig` and `--context`, as kubectl takes them."""

    kubeconfig: str | None = None
    context: str | None = None

    def _access(self) -> tuple[str, bool]:
        access = ClusterAccess()
        return self.kubeconfig or access.kubeconfig, access.in_cluster

    def namespace(self) -> str:
        """The namespace a command defaults to: the context's (kubectl's rule)."""
        kubeconfig, in_cluster = self._access()
        return context_namespace(kubeconfig or None, self.context, in_cluster)


async def connect_kube(target: Target | None = None) -> Kube:
    kubeconfig, in_cluster = (target or Target())._access()
    return await Kube.connect(
        kubeconfig or None,
        in_cluster,
        pool_size=4,
        context=(target or Target()).context,
        request_timeout=REQUEST_TIMEOUT_S,
    )


async def connect_ledger(database_url: str) -> Ledger:
    return await Ledger.connect(
        database_url, min_size=1, max_size=2, connect_timeout_s=LEDGER_CONNECT_TIMEOUT_S
    )
