"""Malformed Presets and Claims, generated: each is either rejected by the API
server with a message naming the field, or accepted and reported in a
condition. The operator never crashes and never loops hot."""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.e2e.support import get, metric, wait_until

from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.operator_process import OperatorProcess

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=2),
    st.dictionaries(st.sampled_from(["x", "name", "cron"]), st.integers(-2, 2), max_size=2),
)
cron = st.one_of(st.sampled_from(["* * * * *", "0 9 * * 1-5", "61 * * * *", "nope", ""]), junk)
duration = st.one_of(st.sampled_from(["30s", "0s", "-1s", "5m", "1h30m", "abc", ""]), junk)


def _maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(value, junk)


preset_spec = st.fixed_dictionaries(
    {
        "template": _maybe(
            st.fixed_dictionaries(
                {
                    "spec": _maybe(
                        st.fixed_dictionaries(
                            {
                                "containers": _maybe(
                                    st.lists(
                                        st.fixed_dictionaries(
                                            {
                                                "name": st.sampled_from(["ws", "Bad_Name", ""]),
                                                "image": st.sampled_from(["busybox", ""]),
                                            }
                                        ),
                                        max_size=2,
                                    )
                                )
                            }
                        )
                    )
                }
            )
        )
    },
    optional={
        "prebuilds": _maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "instances": _maybe(st.integers(-2, 3)),
                    "ttl": duration,
                    "timezone": st.sampled_from(["UTC", "Europe/Berlin", "Mars/Base", "??"]),
                    "schedules": _maybe(
                        st.lists(
                            st.fixed_dictionaries(
                                {"cron": cron, "instances": _maybe(st.integers(-1, 2))}
                            ),
                            max_size=2,
                        )
                    ),
                },
            )
        ),
        "failurePolicy": _maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "hardLimit": _maybe(st.integers(-1, 3)),
                    "backoffBase": duration,
                    "backoffMax": duration,
                },
            )
        ),
        "parameters": _maybe(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "name": st.sampled_from(["A", "A", "b-c", "1x"]),
                        "value": _maybe(st.text(max_size=4)),
                    }
                ),
                max_size=3,
            )
        ),
    },
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=preset_spec)
def test_fuzzed_presets_are_rejected_by_field_or_reported(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess, spec: dict[str, Any]
) -> None:
    name = f"f{abs(hash(json.dumps(spec, sort_keys=True, default=str))) % 10**8}"
    manifest = {
        "apiVersion": "prewarm.dev/v1alpha1",
        "kind": "Preset",
        "metadata": {"name": name},
        "spec": spec,
    }
    result = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False
    )
    if result.returncode != 0:
        assert "spec" in result.stderr, f"rejection names no field: {result.stderr}"
        return
    # Accepted: the operator must pick it up and say something about it.
    observed = wait_until(
        lambda: (get(cluster, namespace, "preset", name).get("status") or {}).get(
            "observedGeneration"
        ),
        timeout=30,
        what=f"status of accepted preset {name}",
    )
    assert observed >= 1
    assert operator.proc is not None
    assert operator.proc.poll() is None, "the operator crashed"
    cluster.kubectl("delete", "-n", namespace, "preset", name, "--wait=false")


def test_operator_is_quiet_after_the_storm(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    # An invalid-but-accepted preset (bad timezone, unknown in the operator's
    # tz database) must not make the operator loop hot.
    manifest = {
        "apiVersion": "prewarm.dev/v1alpha1",
        "kind": "Preset",
        "metadata": {"name": "odd"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "ws", "image": "busybox"}]}},
            "prebuilds": {
                "instances": 1,
                "timezone": "Mars/Base",
                "schedules": [{"cron": "* * * * *", "instances": 2}],
            },
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    wait_until(
        lambda: (get(cluster, namespace, "preset", "odd").get("status") or {}).get("ready") == 1,
        what="ready despite the bad timezone",
    )
    ready = {c["type"]: c for c in get(cluster, namespace, "preset", "odd")["status"]["conditions"]}
    assert "Mars/Base" in ready["Ready"]["message"]

    def passes() -> float:
        return metric(operator.metrics(), "prewarm_reconcile_duration_seconds_count") or 0.0

    before = passes()
    time.sleep(5)
    # Resync is 1 s in tests: a few passes, not thousands.
    assert passes() - before <= 15, "reconciles loop hot"
