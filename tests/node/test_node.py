"""The real node itself: a kubelet on containerd in the run's network namespace,
restricted pods, logs and exec through the API server, Services through kube-proxy."""

from __future__ import annotations

import json
import subprocess

from prewarm.devenv.node import NODE_IP, NODE_LABEL, NODE_NAME
from tests.node.support import get, wait_until
from tests.plugins.node import NodeEnv


def test_the_node_is_real_ready_and_labelled(real_node: NodeEnv) -> None:
    nodes = json.loads(real_node.kubectl("get", "nodes", "-o", "json"))["items"]
    assert [n["metadata"]["name"] for n in nodes] == [NODE_NAME]
    (node,) = nodes
    assert node["metadata"]["labels"][NODE_LABEL] == "true"
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert info["kubeletVersion"] == real_node.cluster.binaries.kube_version
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == NODE_IP
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})


def _pod(name: str, image: str, command: list[str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": command,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def test_restricted_pod_runs_and_logs_and_exec_work(
    real_node: NodeEnv, node_namespace: str
) -> None:
    ns = node_namespace
    command = ["/bin/sh", "-c", "echo hello-from-a-real-container; exec sleep 2147483647"]
    real_node.apply(ns, _pod("shell", real_node.busybox_image, command))
    real_node.kubectl("wait", "-n", ns, "--for=condition=Ready", "pod/shell", "--timeout=180s")
    logs = wait_until(
        lambda: real_node.kubectl("logs", "-n", ns, "shell", check=False), what="pod logs"
    )
    assert "hello-from-a-real-container" in logs
    whoami = real_node.kubectl("exec", "-n", ns, "shell", "--", "id", "-u")
    assert whoami.strip() == "65532"
    denied = real_node.cluster.kubectl(
        "exec", "-n", ns, "shell", "--", "touch", "/written", check=False
    )
    assert denied.returncode != 0
    assert "Read-only file system" in denied.stderr + denied.stdout
    pod = get(real_node, ns, "pod", "shell")
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert pod["status"]["podIP"].startswith("10.214.0.")


def test_a_pod_reaches_the_kubernetes_and_ledger_services(
    real_node: NodeEnv, node_namespace: str
) -> None:
    """ClusterIPs through kube-proxy's iptables rules in the namespace: the API
    server (the `kubernetes` Service, TLS verified with the pod's service-account
    CA) and PostgreSQL (a Service whose endpoint is the server on the node address)."""
    ns = node_namespace
    url = real_node.ledger_service(ns, "reach_test")
    host = url.split("@")[1].split(":")[0]
    probe = (
        "import os, socket, ssl, urllib.request\n"
        "ctx = ssl.create_default_context(cafile="
        "'/var/run/secrets/kubernetes.io/serviceaccount/ca.crt')\n"
        "api = 'https://' + os.environ['KUBERNETES_SERVICE_HOST'] + '/version'\n"
        "print(urllib.request.urlopen(api, context=ctx, timeout=10).status)\n"
        "import time\n"
        "for attempt in range(60):\n"
        "    try:\n"
        f"        socket.create_connection(('{host}', 5432), timeout=10).close()\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(1)  # until kube-proxy has the new Service's rules\n"
        "print('ledger-ok')\n"
    )
    pod = _pod("probe", real_node.operator_image.ref, ["/usr/bin/python3", "-c", probe])
    pod["spec"]["automountServiceAccountToken"] = True  # type: ignore[index]
    real_node.apply(ns, pod)

    def finished() -> str:
        phase = real_node.kubectl("get", "-n", ns, "pod/probe", "-o", "jsonpath={.status.phase}")
        return phase if phase in {"Succeeded", "Failed"} else ""

    phase = wait_until(finished, what="the probe pod to finish")
    logs = real_node.kubectl("logs", "-n", ns, "probe")
    assert phase == "Succeeded", logs
    assert logs.split() == ["200", "ledger-ok"]


def test_kubectl_runs_only_inside_the_namespace(real_node: NodeEnv) -> None:
    """The API server listens in the run's namespace only: from the machine's own
    network namespace its address is not even routed."""
    outside = subprocess.run(
        ["ip", "route", "get", NODE_IP], capture_output=True, text=True, check=False
    )
    inside = subprocess.run(
        real_node.netns.wrap(["ip", "route", "get", NODE_IP]),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "local" in inside.stdout
    assert "local" not in outside.stdout
    routes = subprocess.run(
        real_node.netns.wrap(["ip", "route", "show", "default"]),
        capture_output=True,
        text=True,
        check=True,
    )
    assert routes.stdout.strip() == "", "no default route out of the node's namespace"
