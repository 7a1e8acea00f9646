"""docs/runbook.md's commands, as an on-call engineer would paste them: the names they
use exist in the chart (release `prewarm` in `prewarm-system`), no `helm upgrade` in
them resets the release's other values, and those that can run on the local cluster
run verbatim (placeholders NAME and NAMESPACE filled in) and do what the page says.

Run elsewhere: the Lease and password-rotation commands need a real operator and a
real PostgreSQL pod (tests/node/test_upgrade.py runs them); `kubectl logs` needs a
kubelet; `prewarm history|reset` need the ledger (tests/e2e/test_cli.py)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import uuid

from tests.chart.support import CHART, REPO, kget, one, template
from tests.chart.test_install import RESTRICTED, helm_install, prebound_volume
from tests.e2e.support import preset_manifest

from prewarm.commands.claim import claim_manifest
from prewarm.devenv.cluster import LocalCluster

RUNBOOK = REPO / "docs" / "runbook.md"
RELEASE, NAMESPACE = "prewarm", "prewarm-system"


def sections() -> dict[str, list[str]]:
    """The shell lines of each section's ```sh blocks (continuations joined)."""
    out: dict[str, list[str]] = {}
    for section in RUNBOOK.read_text().split("\n## ")[1:]:
        heading, body = section.split("\n", 1)
        lines: list[str] = []
        for block in re.findall(r"```sh\n(.*?)```", body, re.S):
            lines += [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]
        if lines:
            out[heading.strip()] = lines
    return out


def words(line: str) -> list[str]:
    return shlex.split(line, comments=True)


def test_runbook_names_are_the_charts_and_upgrades_keep_the_values() -> None:
    docs = template(release=RELEASE, namespace=NAMESPACE)
    (operator,) = one(docs, "Deployment", RELEASE)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    kinds = {
        "deployment": "Deployment",
        "statefulset": "StatefulSet",
        "endpoints": "Service",
        "secret": "Secret",
        "lease": "Lease",
    }
    checked: set[str] = set()
    for heading, lines in sections().items():
        for line in lines:
            argv = words(line)
            if not argv:
                continue  # a comment line
            if argv[:2] == ["helm", "upgrade"]:
                assert "--reuse-values" in argv, f"{heading}: {line} resets the other values"
                assert argv[2] == RELEASE
                assert (REPO / argv[3]).resolve() == CHART.resolve()
                assert argv[argv.index("-n") + 1] == NAMESPACE
                checked.add("helm upgrade")
            if argv[0] != "kubectl" or "-n" not in argv or argv[argv.index("-n") + 1] != NAMESPACE:
                continue
            i = argv.index("-n")
            argv = argv[:i] + argv[i + 2 :]
            for word in argv:
                m = re.fullmatch(r"(deployment|statefulset)/([a-z0-9-]+)", word)
                if m:
                    one(docs, kinds[m.group(1)], m.group(2))
                    checked.add(m.group(1))
            for kind in ("lease", "endpoints", "secret"):
                if kind in argv:
                    name = next(w for w in argv[argv.index(kind) + 1 :] if not w.startswith("-"))
                    if kind == "secret":
                        name = argv[argv.index("generic") + 1]
                        assert name == f"{RELEASE}-postgresql"
                    elif kind == "lease":
                        assert name == env["PREWARM_LEASE_NAME"], f"{heading}: wrong Lease {name}"
                    else:
                        one(docs, kinds[kind], name)
                    checked.add(kind)
            if "exec" in argv:
                pod = argv[argv.index("exec") + 1]
                sts = one(docs, "StatefulSet", pod.rsplit("-", 1)[0])
                container = argv[argv.index("-c") + 1]
                names = [c["name"] for c in sts["spec"]["template"]["spec"]["containers"]]
                assert container in names
                checked.add("exec")
    assert checked == {
        "helm upgrade",
        "deployment",
        "endpoints",
        "secret",
        "lease",
        "exec",
    }, checked


def wait_gone(cluster: LocalCluster, namespace: str) -> None:
    """An earlier test may have left prewarm-system terminating."""
    deadline = time.monotonic() + 120
    while cluster.kubectl("get", "namespace", namespace, check=False).returncode == 0:
        assert time.monotonic() < deadline, f"namespace {namespace} is still there"
        time.sleep(1)


def run(cluster: LocalCluster, line: str) -> subprocess.CompletedProcess[str]:
    """A runbook line through bash, with the cluster's kubectl and helm first on PATH."""
    tools = cluster.binaries.kubectl.parent
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    env["PATH"] = f"{tools}{os.pathsep}{cluster.binaries.helm.parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        ["bash", "-c", line], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_runbook_commands_run_verbatim_on_the_local_cluster(cluster: LocalCluster) -> None:
    wait_gone(cluster, NAMESPACE)
    cluster.create_namespace(NAMESPACE)
    cluster.kubectl("label", "namespace", NAMESPACE, RESTRICTED)
    volume = prebound_volume(cluster, NAMESPACE, f"data-{RELEASE}-postgresql-0")
    name = f"rb-{uuid.uuid4().hex[:6]}"
    ran: list[str] = []
    try:
        # A production-like install: values of its own that a runbook command must keep.
        helm_install(cluster, RELEASE, NAMESPACE, "--set", "operator.hardLimit=7",
                     "--set", "operator.resyncSeconds=11")  # fmt: skip
        for manifest in (preset_manifest(name, 0), claim_manifest(name, name, "alice")):
            cluster.kubectl("apply", "-n", "default", "-f", "-", input=json.dumps(manifest))
        runnable = {
            "A preset is HardLimited: what now?",
            "A claim is Pending with PresetNotFound, or Failed with it",
            "The operator is down",
            "Pause a preset, or everything",
        }
        for heading, lines in sections().items():
            if heading not in runnable:
                continue
            for line in lines:
                argv = words(line)
                if not argv or (argv[0] != "kubectl" and argv[:2] != ["helm", "upgrade"]):
                    continue  # prewarm history|reset: the ledger (module docstring)
                if "WORKSPACE" in argv or "logs" in argv or "exec" in argv:
                    continue  # a workspace's or the operator's pod: a kubelet
                filled = line.replace("NAMESPACE", "default").replace("NAME", name)
                result = run(cluster, filled)
                assert result.returncode == 0, f"{filled}\n{result.stdout}{result.stderr}"
                ran.append(filled)
        assert len(ran) >= 9, ran

        # What the "Pause" section promises: the preset paused, the operator paused, and
        # every other value of the release as it was.
        preset = kget(cluster, "preset", "-n", "default", name)
        assert preset["metadata"]["annotations"]["prewarm.dev/paused"] == "true"
        assert preset["metadata"]["annotations"]["prewarm.dev/retry"].isdigit()
        deployment = kget(cluster, "deployment", "-n", NAMESPACE, RELEASE)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["PREWARM_PAUSED"] == "true"
        assert env["PREWARM_HARD_LIMIT"] == "7"
        assert env["PREWARM_RESYNC_SECONDS"] == "11"
        values = cluster.helm("get", "values", RELEASE, "-n", NAMESPACE, "-o", "json").stdout
        assert '"hardLimit":7' in values.replace(" ", "")
    finally:
        for kind in ("workspaceclaim", "preset"):
            cluster.kubectl("delete", kind, "-n", "default", name, "--wait=false", check=False)
        cluster.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", volume, "--wait=false", check=False)


def test_the_helpers_read_the_page() -> None:
    """The extraction itself: a continuation line is one command, comments go."""
    assert "Pause a preset, or everything" in sections()
    (upgrade,) = [
        words(line)
        for line in sections()["Pause a preset, or everything"]
        if line.startswith("helm")
    ]
    assert upgrade[-2:] == ["--set", "operator.paused=true"]
