"""Every sample in the repository, applied as its comment says, reaches the
state its comment promises (issue 12, item 8): crds/samples/ and the steps of
the chart's NOTES."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from tests.e2e.support import get, wait_until

from prewarm.api.preset import Preset
from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess
from prewarm.planning.schedule import Schedule, desired_instances

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "crds" / "samples"
PUBLISHED = "https://raw.githubusercontent.com/prewarm/prewarm/main/"


def _status(cluster: LocalCluster, ns: str, kind: str, name: str) -> dict[str, Any]:
    return dict(get(cluster, ns, kind, name).get("status") or {})


def _notes_commands(cluster: LocalCluster, namespace: str) -> list[list[str]]:
    """The `kubectl apply` steps of the chart's NOTES for a release watching `namespace`."""
    result = cluster.helm(
        "install",
        "prewarm",
        str(REPO / "charts" / "prewarm"),
        "--dry-run=client",
        "-n",
        "prewarm-system",
        "--set",
        f"watchNamespaces={{{namespace}}}",
    )
    notes = result.stdout.split("NOTES:", 1)[1]
    return [
        shlex.split(line.replace(PUBLISHED, f"{REPO}/"))
        for line in notes.splitlines()
        if line.strip().startswith("kubectl apply")
    ]


def _scheduled_desired(now: datetime) -> int:
    spec = Preset.model_validate(
        yaml.safe_load((SAMPLES / "preset-scheduled.yaml").read_text())
    ).spec.prebuilds
    schedules = [Schedule(s.cron, s.instances) for s in spec.schedules]
    return desired_instances(spec.instances, schedules, spec.timezone, now).instances


def test_item8_the_notes_steps_and_every_sample_reach_what_their_comments_promise(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    # The NOTES: a pool of three warm workspaces, then a claim on it.
    steps = _notes_commands(cluster, namespace)
    assert [Path(s[-1]).name for s in steps] == ["preset-basic.yaml", "workspaceclaim.yaml"]
    preset_step, claim_step = steps
    cluster.kubectl(*preset_step[1:])
    wait_until(
        lambda: _status(cluster, namespace, "preset", "basic").get("ready") == 3,
        what="the basic pool: three warm workspaces",
    )
    cluster.kubectl(*claim_step[1:])
    wait_until(
        lambda: _status(cluster, namespace, "wsc", "alice-basic").get("phase") == "Bound",
        what="alice-basic Bound",
    )
    claim = _status(cluster, namespace, "wsc", "alice-basic")
    assert claim["source"] == "prebuilt"
    wait_until(
        lambda: _status(cluster, namespace, "preset", "basic").get("ready") == 3,
        what="the pool refills to 3",
    )
    assert _status(cluster, namespace, "preset", "basic")["summary"] == "Normal"

    # Every sample file: the ones above stay as they are, the scheduled pool
    # keeps the count of the schedule that matches now in Berlin.
    before = _scheduled_desired(datetime.now(UTC))
    cluster.kubectl("apply", "-n", namespace, "-f", str(SAMPLES))

    def warm_as_scheduled() -> bool:
        status = _status(cluster, namespace, "preset", "python-dev")
        return bool(status.get("observedGeneration")) and status.get("ready") == status.get(
            "desired"
        )

    wait_until(warm_as_scheduled, timeout=90, what="python-dev warm as its schedule says")
    status = _status(cluster, namespace, "preset", "python-dev")
    after = _scheduled_desired(datetime.now(UTC))
    assert status["desired"] in {before, after}
    assert status["summary"] == "Normal"
    assert _status(cluster, namespace, "wsc", "alice-basic")["phase"] == "Bound"
