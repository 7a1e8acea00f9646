"""The local control plane is real: scheduling, kwok lifecycles, controllers, GC."""

from __future__ import annotations

import json
import time

from prewarm.devenv.cluster import LocalCluster, pinned_versions


def _pod(name: str, behavior: str | None = None) -> str:
    labels = {"sim.prewarm.dev/behavior": behavior} if behavior else {}
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
        }
    )


def _wait_for(cluster: LocalCluster, namespace: str, what: str, jsonpath: str) -> None:
    cluster.kubectl("wait", "-n", namespace, what, f"--for=jsonpath={jsonpath}", "--timeout=60s")


def test_server_reports_its_real_version(cluster: LocalCluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == pinned_versions()["KUBE_VERSION"]


def test_pod_is_scheduled_to_a_kwok_node_and_becomes_ready(
    cluster: LocalCluster, namespace: str
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_pod("ok"))
    cluster.kubectl("wait", "-n", namespace, "pod/ok", "--for=condition=Ready", "--timeout=60s")
    pod = json.loads(cluster.kubectl("get", "-n", namespace, "pod/ok", "-o", "json").stdout)
    assert pod["spec"]["nodeName"].startswith("kwok-node-")
    assert pod["status"]["phase"] == "Running"


def test_labelled_pods_play_out_their_failure(cluster: LocalCluster, namespace: str) -> None:
    for behavior in ("fail", "image-pull-error", "crashloop"):
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_pod(behavior, behavior))
    _wait_for(cluster, namespace, "pod/fail", "{.status.phase}=Failed")
    _wait_for(
        cluster,
        namespace,
        "pod/image-pull-error",
        "{.status.containerStatuses[0].state.waiting.reason}=ErrImagePull",
    )
    _wait_for(
        cluster,
        namespace,
        "pod/crashloop",
        "{.status.containerStatuses[0].state.waiting.reason}=CrashLoopBackOff",
    )
    deadline = time.monotonic() + 30
    restarts = 0
    while time.monotonic() < deadline and restarts < 2:
        restarts = int(
            cluster.kubectl(
                "get",
                "-n",
                namespace,
                "pod/crashloop",
                "-o",
                "jsonpath={.status.containerStatuses[0].restartCount}",
            ).stdout
        )
        time.sleep(0.5)
    assert restarts >= 2, "the crash-loop stage should keep counting restarts"


def test_deployment_gets_its_pods(cluster: LocalCluster, namespace: str) -> None:
    cluster.kubectl("create", "deployment", "web", "-n", namespace, "--image=nginx", "--replicas=2")
    _wait_for(cluster, namespace, "deployment/web", "{.status.readyReplicas}=2")


def test_owner_reference_garbage_collection(cluster: LocalCluster, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "parent", "-n", namespace)
    uid = cluster.kubectl(
        "get", "configmap", "parent", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    child = json.loads(_pod("child"))
    child["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "parent", "uid": uid}
    ]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(child))
    cluster.kubectl("delete", "configmap", "parent", "-n", namespace)
    cluster.kubectl("wait", "-n", namespace, "pod/child", "--for=delete", "--timeout=60s")


def test_namespace_deletion_completes(cluster: LocalCluster) -> None:
    cluster.create_namespace("doomed")
    cluster.kubectl("apply", "-n", "doomed", "-f", "-", input=_pod("p"))
    cluster.kubectl("delete", "namespace", "doomed", "--wait=true", "--timeout=90s")
    assert cluster.kubectl("get", "namespace", "doomed", check=False).returncode != 0
