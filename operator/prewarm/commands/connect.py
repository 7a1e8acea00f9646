"""The CLI's way to the API server: as the operator's, from the same settings."""

from __future__ import annotations

from prewarm.k8s.client import Kube
from prewarm.settings import ClusterAccess


async def connect_kube() -> Kube:
    access = ClusterAccess()
    return await Kube.connect(access.kubeconfig, access.in_cluster, pool_size=4)
