"""The chart's alerts with Prometheus' own tools, and a real Prometheus (Debian's
`prometheus`) scraping the real operator and evaluating those alerts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.chart.support import REPO, one, template
from tests.e2e.support import wait_until

from prewarm.commands.claim import claim_manifest
from prewarm.devenv.cluster import LocalCluster, free_port
from prewarm.devenv.operator_process import OperatorProcess
from prewarm.devenv.processes import stop_process

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
# The job of the default release's metrics, as the chart's ServiceMonitor names it.
JOB = 'job="prewarm-metrics"'


def rules_file(path: Path, **values: str) -> Path:
    """The PrometheusRule of the chart as a plain Prometheus rules file."""
    docs = template(**{"prometheusRule.enabled": "true", **values})
    spec = one(docs, "PrometheusRule")["spec"]
    path.write_text(yaml.safe_dump({"groups": spec["groups"]}))
    return path


def test_promtool_accepts_the_rendered_rules(tmp_path: Path) -> None:
    rules = rules_file(tmp_path / "rules.yaml")
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def annotations(rules: Path, alert: str, **labels: str) -> dict[str, str]:
    """An alert's annotations with $labels filled in, as Prometheus renders them."""
    for group in yaml.safe_load(rules.read_text())["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                out = {}
                for key, text in rule["annotations"].items():
                    for name, value in labels.items():
                        text = text.replace(f"{{{{ $labels.{name} }}}}", value)
                    out[key] = text
                return out
    raise AssertionError(f"no alert {alert}")


def test_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    """`promtool test rules`: each alert on synthetic series, with the chart's `for` values."""
    rules = rules_file(tmp_path / "rules.yaml")
    p = {"namespace": "team", "preset": "py"}
    q = {"namespace": "team", "preset": "go"}
    series = [
        (f'prewarm_preset_hard_limited{{{JOB},namespace="team",preset="py"}}', "0x4 1x20"),
        (f'prewarm_preset_hard_limited{{{JOB},namespace="team",preset="go"}}', "0x24"),
        (f'prewarm_preset_validation_failed{{{JOB},namespace="team",preset="go"}}', "1x24"),
        (f'prewarm_preset_validation_failed{{{JOB},namespace="team",preset="py"}}', "0x24"),
        # py: claims miss and nothing is eligible; go: claims miss but some are eligible.
        (f'prewarm_claim_misses_total{{{JOB},namespace="team",preset="py"}}', "0+1x24"),
        (f'prewarm_preset_eligible{{{JOB},namespace="team",preset="py"}}', "0x24"),
        (f'prewarm_claim_misses_total{{{JOB},namespace="team",preset="go"}}', "0+1x24"),
        (f'prewarm_preset_eligible{{{JOB},namespace="team",preset="go"}}', "3x24"),
        (f'prewarm_ledger_up{{{JOB},namespace="ops",pod="op-1"}}', "1x4 0x20"),
        (f'up{{{JOB},namespace="prewarm-system",instance="op-1"}}', "1x10 0x14"),
    ]
    warning = {"severity": "warning"}
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": [
                    {"eval_time": "8m", "alertname": "PrewarmPresetHardLimited", "exp_alerts": []},
                    {
                        "eval_time": "12m",
                        "alertname": "PrewarmPresetHardLimited",
                        "exp_alerts": [
                            {
                                "exp_labels": {**warning, **p},
                                "exp_annotations": annotations(
                                    rules, "PrewarmPresetHardLimited", **p
                                ),
                            }
                        ],
                    },
                    {
                        "eval_time": "10m",
                        "alertname": "PrewarmPresetValidationFailed",
                        "exp_alerts": [
                            {
                                "exp_labels": {**warning, **q},
                                "exp_annotations": annotations(
                                    rules, "PrewarmPresetValidationFailed", **q
                                ),
                            }
                        ],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "PrewarmPoolExhausted",
                        "exp_alerts": [
                            {
                                "exp_labels": {**warning, **p},
                                "exp_annotations": annotations(rules, "PrewarmPoolExhausted", **p),
                            }
                        ],
                    },
                    {
                        "eval_time": "12m",
                        "alertname": "PrewarmLedgerDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {**warning, "namespace": "ops", "pod": "op-1"},
                                "exp_annotations": annotations(rules, "PrewarmLedgerDown"),
                            }
                        ],
                    },
                    {"eval_time": "9m", "alertname": "PrewarmOperatorDown", "exp_alerts": []},
                    {
                        "eval_time": "20m",
                        "alertname": "PrewarmOperatorDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "job": "prewarm-metrics",
                                    "namespace": "prewarm-system",
                                },
                                "exp_annotations": annotations(rules, "PrewarmOperatorDown"),
                            }
                        ],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "rules_test.yaml"
    test_file.write_text(yaml.safe_dump(test))
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def promtool_test(tmp_path: Path, test: dict[str, Any]) -> None:
    test_file = tmp_path / "rules_test.yaml"
    test_file.write_text(yaml.safe_dump(test))
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_releases_page_for_their_own_shard(tmp_path: Path) -> None:
    """Two releases (one per shard of namespaces, docs/scaling.md), one with a
    nameOverride, both rule files loaded: only the release that is down pages, and a
    preset's alert comes once, from the release whose operator reported it."""
    a = rules_file(tmp_path / "a.yaml", release="shard-a", namespace="ops-a")
    b = rules_file(tmp_path / "b.yaml", release="shard-b", namespace="ops-b", nameOverride="warm")
    job_a, job_b = 'job="shard-a-prewarm-metrics"', 'job="shard-b-warm-metrics"'
    series = [
        (f'up{{{job_a},namespace="ops-a",instance="a-1"}}', "1x30"),
        (f'up{{{job_b},namespace="ops-b",instance="b-1"}}', "1x5 0x25"),
        (f'prewarm_preset_hard_limited{{{job_a},namespace="team-a",preset="py"}}', "1x30"),
        (f'prewarm_preset_hard_limited{{{job_b},namespace="team-c",preset="go"}}', "0x30"),
        (f'prewarm_ledger_up{{{job_a},namespace="ops-a",pod="a-1"}}', "1x30"),
        (f'prewarm_ledger_up{{{job_b},namespace="ops-b",pod="b-1"}}', "0x30"),
    ]
    promtool_test(
        tmp_path,
        {
            "rule_files": [str(a), str(b)],
            "evaluation_interval": "1m",
            "tests": [
                {
                    "interval": "1m",
                    "input_series": [{"series": s, "values": v} for s, v in series],
                    "alert_rule_test": [
                        {"eval_time": "4m", "alertname": "PrewarmOperatorDown", "exp_alerts": []},
                        {
                            "eval_time": "20m",
                            "alertname": "PrewarmOperatorDown",
                            "exp_alerts": [
                                {
                                    "exp_labels": {
                                        "severity": "critical",
                                        "job": "shard-b-warm-metrics",
                                        "namespace": "ops-b",
                                    },
                                    "exp_annotations": annotations(b, "PrewarmOperatorDown"),
                                }
                            ],
                        },
                        {
                            "eval_time": "20m",
                            "alertname": "PrewarmPresetHardLimited",
                            "exp_alerts": [
                                {
                                    "exp_labels": {
                                        "severity": "warning",
                                        "namespace": "team-a",
                                        "preset": "py",
                                    },
                                    "exp_annotations": annotations(
                                        a,
                                        "PrewarmPresetHardLimited",
                                        namespace="team-a",
                                        preset="py",
                                    ),
                                }
                            ],
                        },
                        {
                            "eval_time": "20m",
                            "alertname": "PrewarmLedgerDown",
                            "exp_alerts": [
                                {
                                    "exp_labels": {
                                        "severity": "warning",
                                        "namespace": "ops-b",
                                        "pod": "b-1",
                                    },
                                    "exp_annotations": annotations(b, "PrewarmLedgerDown"),
                                }
                            ],
                        },
                    ],
                }
            ],
        },
    )
    # The job the rules select is the one the ServiceMonitor produces: the metrics
    # Service's name (no jobLabel).
    docs = template(
        release="shard-b",
        namespace="ops-b",
        nameOverride="warm",
        **{"serviceMonitor.enabled": "true"},
    )
    assert "jobLabel" not in one(docs, "ServiceMonitor")["spec"]
    assert one(docs, "Service", "shard-b-warm-metrics")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_alert_links_to_a_runbook_section_that_exists(tmp_path: Path) -> None:
    runbook = REPO / "docs" / "runbook.md"
    anchors = {
        github_anchor(line.lstrip("#"))
        for line in runbook.read_text().splitlines()
        if line.startswith("## ")
    }
    rules = yaml.safe_load(rules_file(tmp_path / "rules.yaml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert len(alerts) == 5
    base = "https://github.com/prewarm/prewarm/blob/main/docs/runbook.md"
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        page, anchor = url.split("#")
        assert page == base, url
        assert anchor in anchors, f"{alert['alert']}: no section #{anchor} in docs/runbook.md"
    moved = yaml.safe_load(
        rules_file(
            tmp_path / "moved.yaml", **{"prometheusRule.runbookBaseUrl": "https://wiki/rb"}
        ).read_text()
    )
    for group in moved["groups"]:
        for rule in group["rules"]:
            assert rule["annotations"]["runbook_url"].startswith("https://wiki/rb#")


# --- a real Prometheus ---------------------------------------------------------------------


class Prometheus:
    def __init__(self, workdir: Path, target: str, rules: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            # What the chart's ServiceMonitor gives: the job is the metrics Service's
            # name, the namespace the release's.
            "scrape_configs": [
                {
                    "job_name": "prewarm-metrics",
                    "honor_labels": True,
                    "static_configs": [
                        {"targets": [target], "labels": {"namespace": "prewarm-system"}}
                    ],
                }
            ],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(ready, timeout=30, what="Prometheus ready")

    def stop(self) -> None:
        stop_process(self.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def value(self, promql: str) -> float | None:
        result = self.api("query", query=promql)["result"]
        return float(result[0]["value"][1]) if result else None

    def firing(self, alert: str) -> list[dict[str, str]]:
        return [
            a["labels"]
            for a in self.api("alerts")["alerts"]
            if a["labels"]["alertname"] == alert and a["state"] == "firing"
        ]


@pytest.fixture
def prometheus_and_operator(
    cluster: LocalCluster, ledger_dsn: str, namespace: str, tmp_path: Path
) -> Iterator[tuple[Prometheus, OperatorProcess]]:
    op = OperatorProcess(cluster, ledger_dsn, namespace, tmp_path / "operator.log")
    op.start()
    # The chart's alerts without their waiting time, so they fire within the test.
    rules = rules_file(
        tmp_path / "rules.yaml",
        **{
            f"prometheusRule.for.{k}": "0s"
            for k in (
                "hardLimited",
                "validationFailed",
                "poolExhausted",
                "ledgerDown",
                "operatorDown",
            )
        },
    )
    prom = Prometheus(tmp_path, f"127.0.0.1:{op.metrics_port}", rules)
    try:
        prom.start()
        yield prom, op
    finally:
        prom.stop()
        op.stop()


def preset(name: str, instances: int, **extra: Any) -> dict[str, Any]:
    labels = extra.pop("labels", {})
    return {
        "apiVersion": "prewarm.dev/v1alpha1",
        "kind": "Preset",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "workspace", "image": "busybox:1.37"}]},
            },
            "prebuilds": {"instances": instances},
            **extra,
        },
    }


def test_prometheus_scrapes_the_operator_and_evaluates_the_alerts(
    prometheus_and_operator: tuple[Prometheus, OperatorProcess],
    cluster: LocalCluster,
    namespace: str,
) -> None:
    prom, op = prometheus_and_operator

    def apply(manifest: dict[str, Any]) -> None:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))

    wait_until(lambda: prom.value('up{job="prewarm-metrics"}') == 1, timeout=30, what="target up")

    apply(preset("pool", 2))
    sel = f'namespace="{namespace}",preset="pool"'
    wait_until(
        lambda: prom.value(f"prewarm_preset_eligible{{{sel}}}") == 2,
        timeout=60,
        what="prewarm_preset_eligible == 2 in Prometheus",
    )
    assert prom.value(f"prewarm_preset_desired{{{sel}}}") == 2

    # A preset whose pods fail at once reaches its hard limit of 1.
    apply(
        preset(
            "broken",
            1,
            labels={"sim.prewarm.dev/behavior": "fail"},
            failurePolicy={"hardLimit": 1},
        )
    )
    # Claims on a preset without a pool: cold starts, misses, nothing eligible. The miss
    # counter is born at 1 with the first miss, and rate() sees no increase in a series'
    # first sample: the alert fires from the second miss on.
    apply(preset("cold", 0))
    misses = f'prewarm_claim_misses_total{{namespace="{namespace}",preset="cold"}}'
    for n, owner in enumerate(("bob", "carol"), start=1):
        apply(claim_manifest(owner, "cold", owner))
        wait_until(
            lambda n=n: prom.value(misses) == n, timeout=60, what=f"{n} miss(es) in Prometheus"
        )
    wait_until(
        lambda: prom.firing("PrewarmPresetHardLimited"),
        timeout=90,
        what="PrewarmPresetHardLimited firing",
    )
    assert [(a["namespace"], a["preset"]) for a in prom.firing("PrewarmPresetHardLimited")] == [
        (namespace, "broken")
    ]
    wait_until(
        lambda: prom.firing("PrewarmPoolExhausted"), timeout=90, what="PrewarmPoolExhausted firing"
    )
    assert [(a["namespace"], a["preset"]) for a in prom.firing("PrewarmPoolExhausted")] == [
        (namespace, "cold")
    ]
    wait_until(
        lambda: (prom.value('sum(prewarm_claim_duration_seconds_count{source="cold"})') or 0) >= 1,
        timeout=60,
        what="the cold claim in the claim latency histogram",
    )
    assert prom.firing("PrewarmOperatorDown") == []
    assert prom.firing("PrewarmPresetValidationFailed") == []
    groups = prom.api("rules")["groups"]
    health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
    assert set(health) == {
        "PrewarmPresetHardLimited",
        "PrewarmPresetValidationFailed",
        "PrewarmPoolExhausted",
        "PrewarmLedgerDown",
        "PrewarmOperatorDown",
    }
    assert set(health.values()) == {"ok"}, health

    # Operator gone: its target goes down and the alert says so.
    op.stop()
    wait_until(
        lambda: prom.firing("PrewarmOperatorDown"), timeout=60, what="PrewarmOperatorDown firing"
    )
