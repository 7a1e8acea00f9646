"""`prewarm dev`: the whole system on this machine, until Ctrl-C.

A real control plane (kwokctl + binaries built from Go modules), a throw-away
PostgreSQL, the CRDs and sample presets, and the operator as a child process
running exactly as in production (`prewarm run`). Everything it starts is
stopped on exit, whatever the exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from prewarm.api.constants import (
    GROUP,
    PLURAL_PREBUILT_WORKSPACES,
    PLURAL_PRESETS,
    PLURAL_WORKSPACE_CLAIMS,
    VERSION,
)
from prewarm.devenv.cluster import LocalCluster
from prewarm.devenv.errors import EnvironmentProblem
from prewarm.devenv.postgres import PostgresServer
from prewarm.devenv.processes import stop_process

_REPO = Path(__file__).resolve().parents[3]
_PLURALS = (PLURAL_PRESETS, PLURAL_PREBUILT_WORKSPACES, PLURAL_WORKSPACE_CLAIMS)


def run_dev(apiserver_port: int, with_operator: bool) -> int:
    # Where the kubeconfig and ledger URL are written for other shells.
    state = Path(os.environ.get("PREWARM_DEV_STATE", _REPO / ".dev"))
    state.mkdir(parents=True, exist_ok=True)
    print("prewarm dev: starting PostgreSQL and the local control plane ...", flush=True)
    with (
        PostgresServer() as pg,
        LocalCluster(name="prewarm-dev", apiserver_port=apiserver_port) as cluster,
    ):
        pg.create_database("prewarm")
        dsn = pg.dsn("prewarm")
        from prewarm.ledger.migrate import migrate

        migrate(dsn)
        (state / "ledger-url").write_text(dsn + "\n")
        kubeconfig = state / "kubeconfig"
        kubeconfig.write_text(cluster.kubeconfig.read_text())
        for crd in sorted((_REPO / "crds").glob("*.yaml")):
            cluster.kubectl("apply", "--server-side", "-f", str(crd))
        cluster.kubectl("wait", "--for=condition=Established", "--all", "crd", "--timeout=60s")
        samples = _REPO / "crds" / "samples"
        if samples.is_dir():
            cluster.kubectl("apply", "-n", "default", "-f", str(samples / "preset-basic.yaml"))
        # What the operator watches: started before these watch caches are
        # ready, it would log 429 "storage is (re)initializing" retries.
        cluster.wait_until_watchable(
            [
                *(f"/apis/{GROUP}/{VERSION}/{plural}" for plural in _PLURALS),
                "/api/v1/pods",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            ]
        )
        kubectl = cluster.binaries.kubectl
        _write_env(state, Path(kubectl).parent, dsn)
        operator: subprocess.Popen[bytes] | None = None
        try:  # from the line that invites Ctrl-C on, Ctrl-C is a clean stop
            print(
                "\nprewarm dev is up.\n"
                f"  kubeconfig : {kubeconfig}\n"
                f"  ledger     : {dsn}\n"
                f"  kubectl    : {kubectl}\n"
                f"  try        : {kubectl} --kubeconfig {kubeconfig} get prewarm -A\n"
                f"  or         : . {state / 'env'}; kubectl get prewarm -A\n"
                "Ctrl-C stops everything.\n",
                flush=True,
            )
            if with_operator:
                env = {
                    **os.environ,
                    "KUBECONFIG": str(kubeconfig),
                    "PREWARM_DATABASE_URL": dsn,
                    "PREWARM_LOG_FORMAT": os.environ.get("PREWARM_LOG_FORMAT", "text"),
                }
                # Its own session: Ctrl-C reaches `prewarm dev`, which then stops
                # the operator in order (rather than both racing to exit).
                operator = subprocess.Popen(
                    [sys.executable, "-m", "prewarm", "run"], env=env, start_new_session=True
                )
            while True:
                if operator is not None and operator.poll() is not None:
                    raise EnvironmentProblem(
                        f"the operator exited with code {operator.returncode}; see its log above"
                    )
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("\nprewarm dev: stopping ...", flush=True)
        finally:
            stop_process(operator)
    return 0


def _write_env(state: Path, kubectl_dir: Path, dsn: str) -> None:
    """`.dev/env`, to source in another shell: the README's quickstart runs
    verbatim on a machine without kubectl (the project's own is in its cache)."""
    venv_bin = Path(sys.executable).parent
    (state / "env").write_text(
        "# Written by `prewarm dev` (make dev): . .dev/env\n"
        f'export PATH="{kubectl_dir}:{venv_bin}:$PATH"\n'
        f'export KUBECONFIG="{state / "kubeconfig"}"\n'
        f'export PREWARM_DATABASE_URL="{dsn}"\n'
    )


def run_dev_real_node() -> int:
    """`prewarm dev --real-node`: the node tier's environment, until Ctrl-C.

    A network namespace of its own with the control plane, PostgreSQL, a real
    kubelet on containerd and kube-proxy; the operator image built by buildah and
    installed with the Helm chart into `prewarm-system`; the sample preset in
    `default`. Everything lives in the namespace, so kubectl runs through nsenter.
    """
    from prewarm.devenv.node import start_node_env

    state = Path(os.environ.get("PREWARM_DEV_STATE", _REPO / ".dev"))
    state.mkdir(parents=True, exist_ok=True)
    print("prewarm dev --real-node: building images, starting the node ...", flush=True)
    env = start_node_env(_REPO)
    try:
        ns = "prewarm-system"
        env.cluster.create_namespace(ns)
        env.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
        url = env.ledger_service(ns, "prewarm")
        secret = "prewarm-database"
        env.kubectl("create", "secret", "generic", secret, "-n", ns, f"--from-literal=url={url}")
        repository, tag = env.operator_image.ref.rsplit(":", 1)
        env.cluster.helm(
            "install", "prewarm", str(_REPO / "charts" / "prewarm"), "-n", ns,
            "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", "postgresql.enabled=false", "--set", f"database.existingSecret={secret}",
            "--wait", "--timeout", "5m",
        )  # fmt: skip
        sample = _REPO / "crds" / "samples" / "preset-basic.yaml"
        for line in sample.read_text().splitlines():
            if line.strip().startswith("image:"):
                env.node.tag(env.busybox_image, line.split(":", 1)[1].strip())
        env.kubectl("apply", "-n", "default", "-f", str(sample))
        kubeconfig = state / "kubeconfig"
        kubeconfig.write_text(env.cluster.kubeconfig.read_text())
        kubectl = " ".join([*env.cluster.wrap([]), str(env.cluster.binaries.kubectl)])
        print(
            "\nprewarm dev --real-node is up.\n"
            f"  kubectl : {kubectl} --kubeconfig {kubeconfig}\n"
            f"  try     : {kubectl} --kubeconfig {kubeconfig} get prewarm,pods -A\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nprewarm dev: stopping ...", flush=True)
    finally:
        leftovers = env.stop()
        if leftovers:
            print(f"prewarm dev: left behind: {leftovers}", file=sys.stderr, flush=True)
    return 0
