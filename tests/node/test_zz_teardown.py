"""Last test of the tier (files run in name order): take the real node down and
check that nothing of it is left: containerd shims and every other process,
mounts, pod network namespaces, the run's namespace (with its veths and bridge),
cgroups."""

from __future__ import annotations

import os
import subprocess

from tests.plugins.node import NodeEnv


def test_stopping_the_node_leaves_nothing_running(real_node: NodeEnv) -> None:
    workdirs = [str(real_node.node.workdir), str(real_node.cluster.workdir)]
    leftovers = real_node.stop()
    assert leftovers == [], leftovers
    assert not real_node.netns.exists()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert real_node.netns.name not in netns.stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    assert "pwnode" not in links.stdout
    assert "pwcni0" not in links.stdout
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    for workdir in workdirs:
        assert workdir not in procs.stdout
    with open("/proc/self/mountinfo") as mounts:
        text = mounts.read()
    for workdir in workdirs:
        assert workdir not in text
    assert real_node.node.notes == [], f"forced clean-up was needed: {real_node.node.notes}"
    for workdir in workdirs:
        assert not os.path.exists(workdir), f"{workdir} was not removed"
