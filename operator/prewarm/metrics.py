"""Every metric the operator exports, and the helpers that record them.

Names carry the prefix `prewarm_`; pool metrics are labelled by namespace and
preset. docs/reference/metrics.md lists them with their meaning.
"""

from __future__ import annotations

import contextlib
import platform
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import Counter, Gauge, Histogram, Info

from prewarm.api.claim import ClaimSource
from prewarm.api.reasons import DisruptionReason, FailureReason

PRESET = ("namespace", "preset")


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:  # run from the source tree without installing
        return "unknown"


build_info = Info("prewarm_build", "The running prewarm: its version, Python's and kopf's.")
build_info.info(
    {
        "version": _version("prewarm"),
        "python": platform.python_version(),
        "kopf": _version("kopf"),
    }
)

# Exposed as prewarm_prebuilds_started_total. Not `..._created`: prometheus-client
# adds a `<name>_created` sample to every counter (prewarm_prebuilds_created_created).
prebuilds_created = Counter(
    "prewarm_prebuilds_started", "Prebuilt workspaces created (build attempts started).", PRESET
)
prebuilds_failed = Counter(
    "prewarm_prebuilds_failed",
    "Prebuild attempts that failed, by failure reason.",
    (*PRESET, "reason"),
)
prebuilds_disrupted = Counter(
    "prewarm_prebuilds_disrupted",
    "Prebuilds lost to their infrastructure (evicted, preempted, node lost, pod deleted, "
    "readiness lost after Ready, unschedulable) and replaced; never counted as failures.",
    (*PRESET, "reason"),
)
workspace_creates_refused = Counter(
    "prewarm_workspace_creates_refused",
    "PrebuiltWorkspace creates the API server refused (a policy, a missing permission, "
    "an invalid object, a quota on their count); retried with backoff, never a build.",
    PRESET,
)
prebuilds_claimed = Counter(
    "prewarm_prebuilds_claimed", "Warm workspaces handed to a claim.", PRESET
)
memory_entries = Gauge(
    "prewarm_memory_entries",
    "Entries the operator remembers between passes, by kind (presets, preset_uids, "
    "workspaces, claims, timers); each shrinks when its objects are deleted.",
    ("kind",),
)
preset_desired = Gauge("prewarm_preset_desired", "Warm instances the preset should have.", PRESET)
preset_running = Gauge(
    "prewarm_preset_running", "Warm instances of the current template (starting + ready).", PRESET
)
preset_eligible = Gauge(
    "prewarm_preset_eligible", "Ready, unclaimed instances a claim can take now.", PRESET
)
preset_starting = Gauge("prewarm_preset_starting", "Instances still building.", PRESET)
preset_hard_limited = Gauge(
    "prewarm_preset_hard_limited",
    "1 while the preset has reached its failure hard limit and gets no new prebuilds.",
    PRESET,
)
preset_validation_failed = Gauge(
    "prewarm_preset_validation_failed",
    "1 while the preset's template is rejected by the API server.",
    PRESET,
)
preset_paused = Gauge(
    "prewarm_preset_paused", "1 while prebuilds of the preset are paused.", PRESET
)
preset_schedule_invalid = Gauge(
    "prewarm_preset_schedule_invalid",
    "1 while a schedule of the preset is ignored (unknown timezone, bad or impossible cron).",
    PRESET,
)
# Demand mode (spec.prebuilds.autoscale): what the operator sees and chooses.
# Present only for presets in demand mode; the count itself is prewarm_preset_desired.
autoscale_arrivals = Gauge(
    "prewarm_preset_autoscale_arrivals_per_minute",
    "Claim arrivals per minute demand mode uses (the window's rate or its last quarter's).",
    PRESET,
)
autoscale_build_seconds = Gauge(
    "prewarm_preset_autoscale_build_seconds",
    "Create-to-Ready time of the latest Ready builds of the current template, by "
    "quantile (0.5, 0.9: demand mode's build time).",
    (*PRESET, "quantile"),
)
autoscale_slot_seconds = Gauge(
    "prewarm_preset_autoscale_slot_seconds",
    "How long a taken warm slot stayed empty (claim bound to its replacement Ready) for "
    "the latest warm claims, by quantile (0.9: demand mode's holding time when it is "
    "longer than the build's).",
    (*PRESET, "quantile"),
)
autoscale_predicted_miss_ratio = Gauge(
    "prewarm_preset_autoscale_predicted_miss_ratio",
    "The model's chance that a claim finds no Ready instance at the desired count.",
    PRESET,
)
autoscale_recommended = Gauge(
    "prewarm_preset_autoscale_recommended",
    "The model's count before the scale-down delay (desired is what the pool keeps).",
    PRESET,
)
autoscale_reason = Gauge(
    "prewarm_preset_autoscale_reason",
    "1 for the reason of demand mode's current count (status.autoscale.reason), else 0.",
    (*PRESET, "reason"),
)
_AUTOSCALE_GAUGES = (autoscale_arrivals, autoscale_predicted_miss_ratio, autoscale_recommended)
_QUANTILES = ("0.5", "0.9")
# (arrivals/min, build p50, build p90, slot p90, predicted miss ratio, recommended)
AutoscaleValues = tuple[float | None, float | None, float | None, float | None, float | None, int]


def set_autoscale(
    namespace: str,
    preset: str,
    values: AutoscaleValues | None,
    reason: str,
    reasons: tuple[str, ...],
) -> None:
    """Demand mode's gauges: (arrivals/min, build p50, build p90, slot p90,
    predicted miss ratio, recommended); None (not in demand mode) removes
    them. An unknown value is NaN."""
    _AUTOSCALE_REASONS.update(reasons)
    if values is None:
        forget_autoscale(namespace, preset)
        return
    arrivals, p50, p90, slot_p90, miss, recommended = values
    for gauge, value in zip(_AUTOSCALE_GAUGES, (arrivals, miss, recommended), strict=True):
        gauge.labels(namespace, preset).set(_value(value))
    for quantile, value in zip(_QUANTILES, (p50, p90), strict=True):
        autoscale_build_seconds.labels(namespace, preset, quantile).set(_value(value))
    autoscale_slot_seconds.labels(namespace, preset, "0.9").set(_value(slot_p90))
    for known in reasons:
        autoscale_reason.labels(namespace, preset, known).set(1 if known == reason else 0)


def _value(value: float | None) -> float:
    return float("nan") if value is None else value


_AUTOSCALE_REASONS: set[str] = set()


def forget_autoscale(namespace: str, preset: str) -> None:
    for gauge in _AUTOSCALE_GAUGES:
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, preset)
    for quantile in _QUANTILES:
        with contextlib.suppress(KeyError):
            autoscale_build_seconds.remove(namespace, preset, quantile)
    with contextlib.suppress(KeyError):
        autoscale_slot_seconds.remove(namespace, preset, "0.9")
    for known in _AUTOSCALE_REASONS:
        with contextlib.suppress(KeyError):
            autoscale_reason.remove(namespace, preset, known)


reconcile_duration = Histogram(
    "prewarm_reconcile_duration_seconds",
    "Time of one reconcile pass of a preset.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
prebuild_ready_seconds = Histogram(
    "prewarm_prebuild_ready_seconds",
    "Time from a prebuilt workspace's creation to its Ready.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
reconcile_errors = Counter(
    "prewarm_reconcile_errors", "Reconcile passes that ended in an error.", PRESET
)

claims = Counter(
    "prewarm_claims",
    "WorkspaceClaims bound, by where the workspace came from (prebuilt or cold).",
    (*PRESET, "source"),
)
claim_misses = Counter(
    "prewarm_claim_misses",
    "Claims that found no warm workspace and started a cold build.",
    PRESET,
)
claim_duration = Histogram(
    "prewarm_claim_duration_seconds",
    "From the operator first seeing a claim to the claim being Bound, by source.",
    ("source",),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
claim_reinit_seconds = Histogram(
    "prewarm_claim_reinit_seconds",
    "From a claim being Bound to every agent of its workspace having re-initialised it.",
    PRESET,
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
)
REINIT_FAILURE_REASONS = ("ReinitRetrying", "ReinitFailed", "ReinitTimedOut")
claim_reinit_failures = Counter(
    "prewarm_claim_reinit_failures",
    "Failed hook runs of a claimed workspace's agents, by the claim's Reinitialized reason "
    "(ReinitRetrying: the agent tries again; ReinitFailed, ReinitTimedOut: it gave up).",
    (*PRESET, "reason"),
)

ledger_up = Gauge(
    "prewarm_ledger_up", "1 while the PostgreSQL ledger answers; 0 while creates are paused."
)
ledger_backlog = Gauge(
    "prewarm_ledger_backlog",
    "Ledger writes PostgreSQL has not taken yet (queued or being written).",
)
ledger_writes_dropped = Counter(
    "prewarm_ledger_writes_dropped",
    "Ledger writes given up because no retry can make them succeed (a constraint "
    "violation, refused data, a wrong statement), by error class.",
    ("error",),
)

QUEUE = ("queue",)
workqueue_depth = Gauge(
    "prewarm_workqueue_depth", "Keys waiting in a work queue (not being worked on).", QUEUE
)
workqueue_wait_seconds = Histogram(
    "prewarm_workqueue_wait_seconds",
    "From a key entering a work queue to a worker taking it.",
    QUEUE,
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
)
workqueue_retries = Counter(
    "prewarm_workqueue_retries",
    "Passes that raised and are retried (the key is queued again after a delay).",
    QUEUE,
)


class QueueMetrics:
    """A work queue's observer (prewarm.workqueue.QueueObserver) for one `queue` label."""

    def __init__(self, queue: str) -> None:
        self._depth = workqueue_depth.labels(queue)
        self._wait = workqueue_wait_seconds.labels(queue)
        self._retries = workqueue_retries.labels(queue)

    def depth(self, keys: int) -> None:
        self._depth.set(keys)

    def waited(self, seconds: float) -> None:
        self._wait.observe(seconds)

    def retried(self) -> None:
        self._retries.inc()


_POOL_GAUGES = (
    preset_desired,
    preset_running,
    preset_eligible,
    preset_starting,
    preset_hard_limited,
    preset_validation_failed,
    preset_paused,
    preset_schedule_invalid,
)


# Counters a preset's series should exist for from its first pass, at 0: a
# rate() or increase() alert sees the first event only if the series was
# there before it.
_PRESET_COUNTERS = (prebuilds_created, prebuilds_claimed, claim_misses)


def start_preset(namespace: str, preset: str) -> None:
    for counter in _PRESET_COUNTERS:
        counter.labels(namespace, preset)


# Per-preset series with a third label, and every value that label can take.
_PRESET_SERIES_BY = (
    (claim_reinit_failures, REINIT_FAILURE_REASONS),
    (prebuilds_failed, tuple(FailureReason)),
    (prebuilds_disrupted, tuple(DisruptionReason)),
    (claims, tuple(ClaimSource)),
)


def forget_preset(namespace: str, preset: str) -> None:
    """A deleted preset must not linger in the gauges and counters."""
    per_preset = (
        *_POOL_GAUGES,
        *_PRESET_COUNTERS,
        claim_reinit_seconds,
        workspace_creates_refused,
        reconcile_errors,
    )
    for metric in per_preset:
        with contextlib.suppress(KeyError):
            metric.remove(namespace, preset)
    forget_autoscale(namespace, preset)
    for labelled, values in _PRESET_SERIES_BY:
        for value in values:
            with contextlib.suppress(KeyError):
                labelled.remove(namespace, preset, str(value))
