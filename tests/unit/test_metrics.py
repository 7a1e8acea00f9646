from __future__ import annotations

import platform
import re
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

from prewarm import metrics

REPO = Path(__file__).resolve().parents[2]


def _exposed() -> str:
    return generate_latest().decode()


def test_a_presets_counters_exist_at_zero_from_its_first_pass_and_go_with_it() -> None:
    series = 'prewarm_claim_misses_total{namespace="team",preset="fresh"}'
    assert series not in _exposed()
    metrics.start_preset("team", "fresh")
    assert f"{series} 0.0" in _exposed()
    metrics.forget_preset("team", "fresh")
    assert series not in _exposed()


def test_a_deleted_presets_reason_and_source_series_go_with_it() -> None:
    # Every per-preset series, whatever its third label, must leave with the
    # preset: a failure counter that lingered kept alerting on a deleted preset.
    metrics.prebuilds_failed.labels("team", "gone", "ImagePullFailed").inc()
    metrics.prebuilds_disrupted.labels("team", "gone", "Evicted").inc()
    metrics.claims.labels("team", "gone", "cold").inc()
    metrics.workspace_creates_refused.labels("team", "gone").inc()
    metrics.reconcile_errors.labels("team", "gone").inc()
    assert 'preset="gone"' in _exposed()
    metrics.forget_preset("team", "gone")
    assert 'preset="gone"' not in _exposed()


def test_issue18_no_exposed_sample_name_is_doubled() -> None:
    # prometheus-client adds <name>_created to every counter and histogram: a
    # counter named ..._created exposed ..._created_created (and ..._total).
    metrics.start_preset("team", "names")
    names = {
        sample.name
        for family in REGISTRY.collect()
        if family.name.startswith("prewarm_")
        for sample in family.samples
    }
    metrics.forget_preset("team", "names")
    assert "prewarm_prebuilds_started_total" in names
    doubled = sorted(n for n in names if re.search(r"(_created|_total|_bucket|_count|_sum){2}$", n))
    assert doubled == []


def test_issue18_build_info_names_prewarm_python_and_kopf() -> None:
    (sample,) = [
        s for family in REGISTRY.collect() for s in family.samples if s.name == "prewarm_build_info"
    ]
    assert sample.value == 1
    assert set(sample.labels) == {"version", "python", "kopf"}
    assert sample.labels["python"] == platform.python_version()
    assert all(sample.labels.values())


def test_issue18_workqueue_metrics_are_exposed_per_queue() -> None:
    observer = metrics.QueueMetrics("unit-test")
    observer.depth(3)
    observer.waited(0.2)
    observer.retried()
    text = _exposed()
    assert 'prewarm_workqueue_depth{queue="unit-test"} 3.0' in text
    assert 'prewarm_workqueue_wait_seconds_count{queue="unit-test"} 1.0' in text
    assert 'prewarm_workqueue_retries_total{queue="unit-test"} 1.0' in text


def test_issue18_every_metric_the_chart_queries_is_exported() -> None:
    # The dashboard and the alerts must follow a rename (prebuilds_created -> _started).
    exported = {sample.name for family in REGISTRY.collect() for sample in family.samples} | {
        family.name for family in REGISTRY.collect()
    }
    chart = REPO / "charts" / "prewarm"
    for path in (
        chart / "files" / "dashboards" / "prewarm.json",
        chart / "templates" / "prometheusrule.yaml",
    ):
        used = set(re.findall(r"\bprewarm_[a-z_]+[a-z]", path.read_text()))
        # Series without a sample yet (labelled, never set) show by family name.
        missing = {
            n
            for n in used
            if n not in exported and re.sub(r"_(total|bucket|sum|count)$", "", n) not in exported
        }
        assert missing == set(), path


def test_issue20_demand_mode_gauges_appear_with_it_and_go_with_the_preset() -> None:
    reasons = ("Demand", "AtMin")
    metrics.set_autoscale("team", "auto", (12.0, 3.5, None, 4.25, 0.02, 4), "Demand", reasons)
    text = _exposed()
    assert (
        'prewarm_preset_autoscale_arrivals_per_minute{namespace="team",preset="auto"} 12.0' in text
    )
    assert (
        'prewarm_preset_autoscale_build_seconds{namespace="team",preset="auto",quantile="0.5"} 3.5'
        in text
    )
    assert (
        'prewarm_preset_autoscale_build_seconds{namespace="team",preset="auto",quantile="0.9"} NaN'
        in text
    )
    assert (
        'prewarm_preset_autoscale_slot_seconds{namespace="team",preset="auto",quantile="0.9"} 4.25'
        in text
    )
    assert (
        'prewarm_preset_autoscale_reason{namespace="team",preset="auto",reason="Demand"} 1.0'
        in text
    )
    assert (
        'prewarm_preset_autoscale_reason{namespace="team",preset="auto",reason="AtMin"} 0.0' in text
    )
    metrics.set_autoscale("team", "auto", None, "", reasons)  # demand mode turned off
    assert 'preset="auto"' not in _exposed()
    metrics.set_autoscale("team", "auto", (1.0, 1.0, 1.0, None, 0.1, 1), "AtMin", reasons)
    metrics.forget_preset("team", "auto")
    assert 'preset="auto"' not in _exposed()
