"""Operator settings: environment variables PREWARM_* (see docs/reference/settings.md).

Imports nothing internal but the pure duration type, so every layer can
depend on it. Durations use the same Go syntax as the CRDs: 90s, 15m, 1h30m.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import Field, StringConstraints
from pydantic_settings import BaseSettings, SettingsConfigDict

from prewarm import __version__
from prewarm.api.durations import Duration, PositiveDuration

# A namespace's name (a DNS-1123 label).
NamespaceName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
]

# The agent image when neither PREWARM_AGENT_IMAGE nor the operator's own pod tells.
DEFAULT_AGENT_IMAGE = f"ghcr.io/prewarm/prewarm:{__version__}"


class ClusterAccess(BaseSettings):
    """How to reach the API server: what every prewarm process that talks to it reads."""

    model_config = SettingsConfigDict(env_prefix="PREWARM_", extra="ignore")

    # Not PREWARM_*: the conventions of Kubernetes clients.
    kubeconfig: str = Field(
        default="",
        validation_alias="KUBECONFIG",
        description="Kubeconfig file; wins over the pod's service account.",
    )
    kubernetes_service_host: str = Field(
        default="",
        validation_alias="KUBERNETES_SERVICE_HOST",
        description="Set by Kubernetes in every pod: use the pod's service account.",
    )

    @property
    def in_cluster(self) -> bool:
        return bool(self.kubernetes_service_host)


class CliSettings(ClusterAccess):
    """What the CLI's commands read besides their flags."""

    database_url: str = Field(
        default="",
        description="The ledger for `prewarm status/history` (no default: they say so).",
    )
    dev_apiserver_port: int = Field(
        default=6443, ge=1, le=65535, description="kube-apiserver port of `prewarm dev`."
    )


class Settings(ClusterAccess):
    """Every knob of the operator. Each field is documented in docs/reference/settings.md."""

    database_url: str = Field(
        default="postgresql://localhost/prewarm",
        description="libpq connection string or URL of the PostgreSQL ledger.",
    )
    hard_limit: int = Field(
        default=3,
        ge=0,
        description=(
            "Consecutive failed prebuilds after which a preset stops being retried; "
            "0 disables the limit. A preset's spec.failurePolicy.hardLimit overrides it."
        ),
    )
    failed_to_keep: int = Field(
        default=3,
        ge=0,
        description=(
            "Failed prebuilds of a preset's current template kept (newest first, with "
            "their pods) for inspection; older ones are deleted. A preset's "
            "spec.failurePolicy.failedToKeep overrides it."
        ),
    )
    backoff_base: Duration = Field(
        default=timedelta(seconds=15),
        description="Backoff after the first failure; doubles with each further failure.",
    )
    backoff_max: Duration = Field(
        default=timedelta(minutes=10), description="Upper bound of the backoff."
    )
    failure_lookback: PositiveDuration = Field(
        default=timedelta(hours=1),
        description="Failures older than this no longer put a preset in backoff.",
    )
    readiness_timeout: PositiveDuration = Field(
        default=timedelta(minutes=5),
        description="A prebuild not Ready this long after its pod was created has failed.",
    )
    claim_wait_limit: Duration = Field(
        default=timedelta(minutes=5),
        description=(
            "How long a claim waits for the preset it names (and its ownerSecretRef "
            "Secret) to exist, from its creation; then it fails. 0s waits forever."
        ),
    )
    crashloop_restarts: int = Field(
        default=3, ge=1, description="Container restarts after which a crash loop is a failure."
    )
    autoscale_read_interval: PositiveDuration = Field(
        default=timedelta(minutes=1),
        description=(
            "Demand mode (spec.prebuilds.autoscale) reads a preset's claims and build "
            "times from the ledger at most this often (one query per preset)."
        ),
    )
    resync_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Period of the level-triggered resync: every preset and claim has a pass "
            "at least this often."
        ),
    )
    max_instances_per_preset: int = Field(
        default=500, ge=0, description="Cap on spec.prebuilds.instances; larger asks are clamped."
    )
    max_creates_per_preset: int = Field(
        default=20, ge=1, description="Prebuilds one preset may have in flight (starting) at once."
    )
    max_creates_global: int = Field(
        default=200, ge=1, description="Prebuilds all presets together may have in flight at once."
    )
    preset_workers: int = Field(
        default=8, ge=1, description="Presets reconciled at once (each pass is mostly API waits)."
    )
    paused: bool = Field(
        default=False, description="Stop every create and delete of prebuilds (claims go on)."
    )
    namespaces: list[NamespaceName] = Field(
        default_factory=list,
        description=(
            "Namespaces to watch, by name (not patterns: the pod watch asks for each "
            "namespace's pods); empty means the whole cluster."
        ),
    )
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="Prometheus /metrics port.")
    health_port: int = Field(
        default=8080, ge=0, le=65535, description="kopf liveness endpoint port (/healthz)."
    )
    agent_image: str = Field(
        default="",
        description=(
            "Image of the prewarm agent sidecar, unless a preset names spec.agent.image. "
            "Empty: the image of the operator's own container (read from its pod), "
            "else DEFAULT_AGENT_IMAGE."
        ),
    )
    leader_election: bool = Field(
        default=True,
        description="Only the replica holding the Lease reconciles; others stand by.",
    )
    lease_name: str = Field(default="prewarm-operator", description="Name of the Lease.")
    lease_namespace: str = Field(
        default="",
        description="Namespace of the Lease; empty means the pod's (POD_NAMESPACE) or default.",
    )
    lease_seconds: int = Field(
        default=15, ge=2, description="A leader that has not renewed for this long is replaced."
    )
    log_format: str = Field(default="json", pattern="^(json|text)$", description="Log format.")

    # Not PREWARM_*: the downward API (the chart sets both).
    pod_name: str = Field(
        default="",
        validation_alias="POD_NAME",
        description="The operator's pod (downward API): Events' reportingInstance.",
    )
    pod_namespace: str = Field(
        default="",
        validation_alias="POD_NAMESPACE",
        description="The operator's namespace (downward API): the Lease's, unless set.",
    )
