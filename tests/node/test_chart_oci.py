"""Issue 18: the chart as users get it from a registry, on the real node.

The session's operator (conftest.node_operator) was installed with
`helm install oci://<node registry>/charts/prewarm` after `helm package` and
`helm push`; its agent image comes from its own pod (no PREWARM_AGENT_IMAGE).
"""

from __future__ import annotations

import json

from tests.node.conftest import CHART_REPOSITORY, NodeOperator


def test_the_release_came_from_the_oci_registry(node_operator: NodeOperator) -> None:
    op = node_operator
    assert op.chart_ref == f"{CHART_REPOSITORY}/prewarm"
    releases = json.loads(
        op.env.cluster.helm("list", "-n", op.namespace, "-o", "json", env=op.helm_env).stdout
    )
    (release,) = [r for r in releases if r["name"] == op.release]
    assert release["chart"] == f"prewarm-{op.chart_version}"
    assert release["status"] == "deployed"
    shown = op.env.cluster.helm(
        "show", "chart", op.chart_ref, "--version", op.chart_version, "--plain-http",
        env=op.helm_env,
    )  # fmt: skip
    assert "name: prewarm" in shown.stdout
    assert f"version: {op.chart_version}" in shown.stdout


def test_the_agent_image_is_read_from_the_operator_pod(node_operator: NodeOperator) -> None:
    op = node_operator
    (pod,) = op.pods()[:1]
    spec = json.loads(op.env.kubectl("get", "pod", "-n", op.namespace, pod, "-o", "json"))
    (operator,) = [c for c in spec["spec"]["containers"] if c["name"] == "operator"]
    assert "PREWARM_AGENT_IMAGE" not in {e["name"] for e in operator.get("env", [])}
    logs = op.env.kubectl("logs", "-n", op.namespace, pod, "-c", "operator", "--tail=-1")
    assert f"agent image {operator['image']} (from the operator pod)" in logs, logs[-3000:]
