"""A real local Kubernetes control plane on loopback, for tests and `prewarm dev`.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are built from
their Go modules by hack/build-control-plane.sh into a cache keyed by version;
`kwokctl --runtime binary` wires them together (certificates, flags, kubeconfig)
and runs kwok, which plays the kubelet of a few fake nodes whose pods follow
the lifecycles in hack/kwok/pod-stages.yaml.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prewarm.devenv.errors import EnvironmentProblem

_REPO = Path(__file__).resolve().parents[3]

NODE_COUNT = 3

_NODE_MANIFEST = """\
apiVersion: v1
kind: Node
metadata:
  name: {name}
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: {name}
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
spec: {{}}
status:
  allocatable: {{cpu: "1000", memory: 4Ti, pods: "10000"}}
  capacity: {{cpu: "1000", memory: 4Ti, pods: "10000"}}
"""


def cache_dir() -> Path:
    return Path(os.environ.get("PREWARM_CACHE", Path.home() / ".cache" / "prewarm"))


def pinned_versions(repo: Path = _REPO) -> dict[str, str]:
    """The versions in hack/versions.env, the single place where they are pinned."""
    versions: dict[str, str] = {}
    for line in (repo / "hack" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key] = value
    return versions


@dataclass(frozen=True)
class Binaries:
    """Paths of every binary the local control plane runs, all in the version cache."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    kwokctl: Path
    kubectl: Path
    helm: Path
    node_stages: tuple[Path, ...]
    kube_version: str

    @classmethod
    def from_cache(cls, cache: Path | None = None) -> Binaries:
        cache = cache or cache_dir()
        v = pinned_versions()
        kube = cache / "bin" / f"kube-{v['KUBE_VERSION']}"
        kwok = cache / "bin" / f"kwok-{v['KWOK_VERSION']}"
        tools = cache / "bin" / f"kubectl-helm-{v['KUBECTL_LAYER_VERSION']}"
        found = cls(
            etcd=cache / "bin" / f"etcd-{v['ETCD_VERSION']}" / "etcd",
            kube_apiserver=kube / "kube-apiserver",
            kube_controller_manager=kube / "kube-controller-manager",
            kube_scheduler=kube / "kube-scheduler",
            kwok=kwok / "kwok",
            kwokctl=kwok / "kwokctl",
            kubectl=tools / "kubectl",
            helm=tools / "helm",
            node_stages=(
                kwok / "stages" / "node-initialize.yaml",
                kwok / "stages" / "node-heartbeat-with-lease.yaml",
            ),
            kube_version=v["KUBE_VERSION"],
        )
        missing = [str(p) for p in found.all_paths() if not p.exists()]
        if missing:
            raise EnvironmentProblem(
                "the local control plane is not built: missing "
                + ", ".join(missing)
                + ". Run `make bootstrap` (or hack/build-control-plane.sh and "
                "hack/install-kubectl-helm.sh)."
            )
        return found

    def all_paths(self) -> list[Path]:
        return [
            self.etcd,
            self.kube_apiserver,
            self.kube_controller_manager,
            self.kube_scheduler,
            self.kwok,
            self.kwokctl,
            self.kubectl,
            self.helm,
            *self.node_stages,
        ]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_port_free(port: int, what: str, setting: str) -> None:
    """Fail with a clear message if something listens on `port`.

    Binds as the servers do, with SO_REUSEADDR: the connections of a server
    stopped a moment ago linger in TIME_WAIT for up to a minute, and they do
    not stop kube-apiserver from listening again (they would stop a plain bind).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise EnvironmentProblem(
                f"port {port} on 127.0.0.1 is in use, so {what} cannot listen there. "
                f"Stop whatever holds it (`ss -ltnp 'sport = :{port}'` shows it) "
                f"or choose another port with {setting}."
            ) from None


@dataclass
class LocalCluster:
    """One kwokctl cluster. Use as a context manager: nothing outlives it."""

    name: str
    apiserver_port: int = 0
    binaries: Binaries = field(default_factory=Binaries.from_cache)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="prewarm-kwok-")))
    nodes: int = NODE_COUNT
    # The real-node tier runs the whole cluster inside a network namespace of its
    # own (a path under /run/netns): every command is wrapped in `nsenter --net`.
    netns: Path | None = None
    # With a real node: the address kube-apiserver advertises (the endpoint of the
    # `kubernetes` Service) and Services' first address, added to its certificate.
    advertise_address: str = ""
    _started: bool = False

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "clusters" / self.name / "kubeconfig.yaml"

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def pki_dir(self) -> Path:
        """kwokctl's CA (ca.crt) and admin certificate (admin.crt, admin.key)."""
        return self.workdir / "clusters" / self.name / "pki"

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """The command line that runs `argv` in the cluster's network namespace."""
        if self.netns is None:
            return list(argv)
        return ["nsenter", f"--net={self.netns}", *argv]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KWOK_WORKDIR"] = str(self.workdir)
        # kwokctl would download kubectl for its own use; point it at ours.
        env["KWOK_KUBECTL_BINARY"] = str(self.binaries.kubectl)
        env["KWOK_KUBE_VERSION"] = self.binaries.kube_version
        return env

    def _kwokctl(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        cmd = self.wrap([str(self.binaries.kwokctl), "--name", self.name, *args])
        return subprocess.run(
            cmd, env=self._env(), capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self) -> None:
        if self.apiserver_port:
            ensure_port_free(self.apiserver_port, "kube-apiserver", "PREWARM_DEV_APISERVER_PORT")
        else:
            self.apiserver_port = free_port()
        b = self.binaries
        configs: list[str] = []
        for stage_file in (*b.node_stages, _REPO / "hack" / "kwok" / "pod-stages.yaml"):
            configs += ["--config", str(stage_file)]
        extra: list[str] = []
        if self.advertise_address:
            options, extra = self._real_node_args()
            configs += ["--config", str(options)]
        args = [
            *configs,
            "create",
            "cluster",
            "--runtime",
            "binary",
            "--kube-apiserver-port",
            str(self.apiserver_port),
            "--kube-apiserver-binary",
            str(b.kube_apiserver),
            "--kube-controller-manager-binary",
            str(b.kube_controller_manager),
            "--kube-scheduler-binary",
            str(b.kube_scheduler),
            "--etcd-binary",
            str(b.etcd),
            "--kwok-controller-binary",
            str(b.kwok),
            "--kube-authorization",
            "--kube-admission",
            "--disable-qps-limits",
            # kwokctl would otherwise add the cluster to ~/.kube/config and make
            # it the current context of everything else on the machine.
            "--kubeconfig",
            str(self.workdir / "kubeconfig-unused.yaml"),
            "--wait",
            "2m",
            "--timeout",
            "4m",
            *extra,
        ]
        self._started = True
        result = self._kwokctl(*args, timeout=300)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
            self.stop()
            raise EnvironmentProblem(
                f"kwokctl could not start the local control plane (exit {result.returncode}):\n"
                f"{tail}"
            )
        self._create_nodes()

    def _real_node_args(self) -> tuple[Path, list[str]]:
        """kube-apiserver for a real kubelet: advertised on the node network, with a
        client certificate for the kubelet API (logs, exec) and the Service IP of
        `kubernetes` (10.0.0.1, the first address of the default range) in its
        serving certificate."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        options = self.workdir / "real-node-options.yaml"
        options.write_text(
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\n"
            "kind: KwokctlConfiguration\n"
            "options:\n"
            f"  kubeApiserverCertSANs: ['10.0.0.1', '{self.advertise_address}']\n"
        )
        pki = self.pki_dir
        return options, [
            # No fake nodes beside the real one: kwok (which would manage every
            # node, the real one included) does not run.
            "--disable",
            "kwok-controller",
            "--extra-args",
            f"kube-apiserver=advertise-address={self.advertise_address}",
            "--extra-args",
            f"kube-apiserver=kubelet-client-certificate={pki / 'admin.crt'}",
            "--extra-args",
            f"kube-apiserver=kubelet-client-key={pki / 'admin.key'}",
            # The node's address, not its name: there is no DNS in the namespace.
            "--extra-args",
            "kube-apiserver=kubelet-preferred-address-types=InternalIP,Hostname",
        ]

    def _create_nodes(self) -> None:
        if self.nodes == 0:
            return
        manifests = "---\n".join(
            _NODE_MANIFEST.format(name=f"kwok-node-{i}") for i in range(self.nodes)
        )
        self.kubectl("apply", "-f", "-", input=manifests)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = self.kubectl(
                "get",
                "nodes",
                "-o",
                "jsonpath={range .items[*]}"
                '{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
            ).stdout.split()
            if out.count("True") >= self.nodes:
                return
            time.sleep(0.2)
        raise EnvironmentProblem("kwok did not make the fake nodes Ready within 60 s")

    def stop(self) -> list[str]:
        """Stop everything; return what kwokctl left running (then killed), if anything."""
        if not self._started:
            shutil.rmtree(self.workdir, ignore_errors=True)  # a start that failed before kwokctl
            return []
        self._started = False
        self._kwokctl("delete", "cluster", timeout=120)
        leftovers = self.leftover_processes()
        if leftovers:
            subprocess.run(["pkill", "-KILL", "-f", str(self.workdir)], check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
        return leftovers

    def _pid_file(self, component: str) -> Path:
        return self.workdir / "clusters" / self.name / "pids" / f"{component}.pid"

    def _snapshot(self, component: str) -> tuple[int, list[str], str]:
        pid = int(self._pid_file(component).read_text().strip())
        proc = Path(f"/proc/{pid}")
        argv = [
            a.decode() for a in proc.joinpath("cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        ]
        return pid, argv, os.readlink(proc / "cwd")

    def _launch(self, component: str, argv: list[str], cwd: str) -> None:
        log = (self.workdir / "clusters" / self.name / "logs" / f"{component}.log").open("ab")
        started = subprocess.Popen(
            self.wrap(argv), cwd=cwd, stdout=log, stderr=log, start_new_session=True
        )
        self._pid_file(component).write_text(str(started.pid))

    def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """Crash kube-apiserver (SIGKILL), keep it down `down_seconds`, start it
        again with the same command line: an API server outage.

        Components that gave up meanwhile (kube-scheduler and the controller
        manager exit when they cannot renew their leader lease) are started
        again too, as a kubelet would. kwokctl's own stop/start is not used: it
        would restart kwok without our pod stages.
        """
        others = ("kube-controller-manager", "kube-scheduler", "kwok-controller")
        snapshots = {c: self._snapshot(c) for c in ("kube-apiserver", *others)}
        pid, argv, cwd = snapshots["kube-apiserver"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(down_seconds)
        self._launch("kube-apiserver", argv, cwd)
        deadline = time.monotonic() + 120
        while self.kubectl("get", "--raw", "/readyz", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise EnvironmentProblem("kube-apiserver not ready 120 s after a restart")
            time.sleep(0.2)
        for component in others:
            old_pid, old_argv, old_cwd = snapshots[component]
            if not Path(f"/proc/{old_pid}").exists():
                self._launch(component, old_argv, old_cwd)

    def wait_until_watchable(self, paths: Sequence[str], timeout: float = 60) -> None:
        """Wait until the API server accepts a watch of each collection in `paths`.

        Right after it starts, or a CRD is established, a resource's watch
        cache initialises, and until then its watches answer 429 "storage is
        (re)initializing": a client started meanwhile (the operator) logs
        retries. Each probe is a one-second watch, all at once.
        """
        deadline = time.monotonic() + timeout
        pending = list(paths)
        while pending:
            cmd = [str(self.binaries.kubectl), "--kubeconfig", str(self.kubeconfig), "get", "--raw"]
            probes = [
                (
                    path,
                    subprocess.Popen(
                        [*cmd, f"{path}?watch=1&timeoutSeconds=1&resourceVersion=0"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                    ),
                )
                for path in pending
            ]
            answers = [
                (path, probe.communicate(timeout=30)[1], probe.returncode) for path, probe in probes
            ]
            pending = [path for path, _, code in answers if code != 0]
            if pending and time.monotonic() > deadline:
                errors = "; ".join(f"{path}: {err.strip()}" for path, err, code in answers if code)
                raise EnvironmentProblem(
                    f"kube-apiserver did not serve watches within {timeout:.0f} s: {errors}"
                )
            if pending:
                time.sleep(0.2)

    def leftover_processes(self) -> list[str]:
        """Command lines of processes still running from this cluster's workdir."""
        found = subprocess.run(
            ["pgrep", "-a", "-f", str(self.workdir)], capture_output=True, text=True, check=False
        )
        return [line for line in found.stdout.splitlines() if line.strip()]

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        cmd = self.wrap([str(self.binaries.kubectl), "--kubeconfig", str(self.kubeconfig), *args])
        result = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, cmd, result.stdout, result.stderr
            )
        return result

    def helm(
        self, *args: str, check: bool = True, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = self.wrap([str(self.binaries.helm), "--kubeconfig", str(self.kubeconfig), *args])
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=300, check=check, env=full_env
        )

    def create_namespace(self, name: str, timeout: float = 60) -> None:
        """Create a namespace and wait for its default ServiceAccount (pods need it).

        `kubectl wait` fails at once on an object that does not exist yet, so poll.
        """
        self.kubectl("create", "namespace", name)
        deadline = time.monotonic() + timeout
        while self.kubectl("get", "-n", name, "serviceaccount", "default", check=False).returncode:
            if time.monotonic() > deadline:
                raise EnvironmentProblem(f"namespace {name} got no default ServiceAccount")
            time.sleep(0.1)

    def apply_dir(self, path: Path, extra: Sequence[str] = ()) -> None:
        self.kubectl("apply", "--server-side", "-f", str(path), *extra)

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def local_cluster(name: str, apiserver_port: int = 0) -> Iterator[LocalCluster]:
    with LocalCluster(name=name, apiserver_port=apiserver_port) as cluster:
        yield cluster
