"""A real Kubernetes node on this machine, for the node tier (tests/node).

Everything runs inside one network namespace that the run creates
(`ip netns add`), entered with `nsenter --net=...` (not `ip netns exec`, which
remounts /sys and hides the cgroup mounts from the kubelet):

- a veth pair inside the namespace carries the node address (NODE_IP); `lo` is
  up; there is no default route and no NAT, so nothing is routed off the machine;
- the local control plane (`LocalCluster`, kwokctl) runs in the namespace too,
  with kube-apiserver advertising NODE_IP (the `kubernetes` Service's endpoint)
  and a kubelet client certificate (the cluster's admin certificate), so
  `kubectl logs/exec` work;
- containerd (Debian's, own root/state/socket under a temporary directory; the
  CRI settings that work here: restrict_oom_score_adj, a local sandbox image,
  CNI plugins from /usr/lib/cni with a bridge on POD_CIDR);
- a kubelet (built from the pinned k8s.io/kubernetes) registering node NODE_NAME,
  labelled NODE_LABEL, with its pods under its own cgroup root;
- kube-proxy in iptables mode, so pods reach ClusterIP Services;
- a local image registry (Debian's docker-registry) on REGISTRY, holding the
  busybox image (`registry_image`);
- a cluster DNS that only knows Services (`prewarm.devenv.node_dns`).

Every command that talks to the cluster goes through `nsenter` (see `wrap`).
`stop()` takes it all down, and `leftovers()` lists whatever is still there:
processes, mounts, network namespaces, cgroups.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from prewarm.devenv.cluster import LocalCluster, cache_dir, pinned_versions
from prewarm.devenv.errors import EnvironmentProblem
from prewarm.devenv.postgres import PostgresServer
from prewarm.devenv.processes import stop_process

_REPO = Path(__file__).resolve().parents[3]

NODE_IP = "10.213.0.2"
NODE_PREFIX = 24
POD_CIDR = "10.214.0.0/24"
NODE_NAME = "real-node"
NODE_LABEL = "node.prewarm.dev/real"
# Debian's CNCF distribution registry, plain HTTP on the node address: images
# pulled from it are real pulls, and a tag it lacks is a real ErrImagePull.
REGISTRY = f"{NODE_IP}:5000"
CNI_BIN_DIR = Path("/usr/lib/cni")
NETNS_DIR = Path("/run/netns")
# Places outside the temporary directory that containerd 1.6 and libcni use
# whatever the configuration (shim sockets, CNI result cache): checked for
# entries the run created and did not remove.
HOST_STATE_DIRS = (Path("/run/containerd/s"), Path("/var/lib/cni/results"))
_CGROUP_FS = Path("/sys/fs/cgroup")
_DEBIAN_PACKAGES = (
    "containerd runc containernetworking-plugins iptables conntrack buildah mmdebstrap "
    "busybox-static docker-registry"
)


@dataclass(frozen=True)
class NodeImage:
    """An image built by hack/build-node-images.sh: its reference and OCI archive."""

    ref: str
    archive: Path


def build_images(repo: Path = _REPO) -> dict[str, NodeImage]:
    """Build (or find in the cache) the node tier's images; name -> image."""
    result = subprocess.run(
        ["bash", str(repo / "hack" / "build-node-images.sh"), "all"],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if result.returncode != 0:
        raise EnvironmentProblem(
            "building the node images failed:\n" + "\n".join(result.stderr.splitlines()[-30:])
        )
    images: dict[str, NodeImage] = {}
    for line in result.stdout.splitlines():
        name, ref, archive = line.split()
        images[name] = NodeImage(ref=ref, archive=Path(archive))
    return images


def node_binaries(cache: Path | None = None) -> tuple[Path, Path]:
    """(kubelet, kube-proxy) from the version cache (hack/build-control-plane.sh node)."""
    cache = cache or cache_dir()
    base = cache / "bin" / f"kube-node-{pinned_versions()['KUBE_VERSION']}"
    kubelet, proxy = base / "kubelet", base / "kube-proxy"
    if not (kubelet.exists() and proxy.exists()):
        raise EnvironmentProblem(
            f"kubelet/kube-proxy are not built ({base}): run `make bootstrap` "
            "(or `hack/build-control-plane.sh node`)"
        )
    return kubelet, proxy


def check_host() -> None:
    """Root, and the Debian packages of the real node."""
    if os.geteuid() != 0:
        raise EnvironmentProblem("the real node needs root (network namespaces, cgroups, mounts)")
    missing = [
        tool
        for tool in (
            "containerd",
            "runc",
            "ctr",
            "iptables",
            "conntrack",
            "nsenter",
            "ip",
            "docker-registry",
        )
        if shutil.which(tool) is None
    ]
    if missing or not (CNI_BIN_DIR / "bridge").exists():
        raise EnvironmentProblem(
            f"missing for the real node: {', '.join(missing) or CNI_BIN_DIR / 'bridge'}; "
            f"run `make bootstrap` (apt-get install -y {_DEBIAN_PACKAGES})"
        )


class NetNamespace:
    """A network namespace of our own, with the node address on a veth pair inside it."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    def wrap(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", f"--net={self.path}", *argv]

    def create(self) -> None:
        _run(["ip", "netns", "add", self.name])
        ip = ["ip", "-n", self.name]
        _run([*ip, "link", "set", "lo", "up"])
        _run([*ip, "link", "add", "pwnode0", "type", "veth", "peer", "name", "pwnode1"])
        _run([*ip, "addr", "add", f"{NODE_IP}/{NODE_PREFIX}", "dev", "pwnode0"])
        _run([*ip, "link", "set", "pwnode0", "up"])
        _run([*ip, "link", "set", "pwnode1", "up"])
        # Bridged pod traffic goes through iptables (kube-proxy's Service rules
        # for pod-to-pod through a ClusterIP); forwarding between the bridge and
        # the node address stays inside this namespace.
        for key, value in (("net.ipv4.ip_forward", "1"), ("net.ipv4.conf.all.route_localnet", "1")):
            _run(self.wrap(["sysctl", "-q", "-w", f"{key}={value}"]), check=False)
        _run(self.wrap(["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"]), check=False)

    def delete(self) -> None:
        if self.path.exists():
            _run(["ip", "netns", "del", self.name], check=False)

    def exists(self) -> bool:
        return self.path.exists()


@dataclass
class RealNode:
    """A kubelet + containerd + kube-proxy joined to `cluster`, inside `netns`.

    Start the namespace first (`NetNamespace.create`), then the cluster inside it
    (`LocalCluster(netns=..., advertise_address=NODE_IP)`), then this.
    """

    cluster: LocalCluster
    netns: NetNamespace
    images: dict[str, NodeImage]
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="prewarm-node-")))
    cgroup_root: str = field(default_factory=lambda: f"prewarm-node-{uuid.uuid4().hex[:8]}")
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)
    _netns_before: set[str] = field(default_factory=set)
    _host_state_before: set[Path] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    # -- paths ---------------------------------------------------------------------

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    def log(self, component: str) -> Path:
        return self.workdir / "logs" / f"{component}.log"

    @property
    def pause_image(self) -> str:
        return self.images["busybox"].ref

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        check_host()
        kubelet, proxy = node_binaries()
        self._netns_before = _cni_netns()
        self._host_state_before = _host_state()
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self._start_containerd()
        for image in self.images.values():
            self.ctr("images", "import", str(image.archive), timeout=300)
        self._start_registry()
        self._spawn(
            "dns",
            [
                sys.executable,
                "-m",
                "prewarm.devenv.node_dns",
                NODE_IP,
                str(self.cluster.binaries.kubectl),
                str(self.cluster.kubeconfig),
            ],
        )
        self._make_cgroup_root()
        self._start_kubelet(kubelet)
        self._start_kube_proxy(proxy)
        self._wait_node_ready()

    def _spawn(self, component: str, argv: Sequence[str]) -> None:
        out = self.log(component).open("ab")
        self._logs.append(out)
        self._procs[component] = subprocess.Popen(
            self.netns.wrap(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _alive(self, component: str) -> bool:
        """True while `component` runs; its exit is an EnvironmentProblem with its log."""
        proc = self._procs[component]
        if proc.poll() is not None:
            tail = "\n".join(self.log(component).read_text(errors="replace").splitlines()[-25:])
            raise EnvironmentProblem(f"{component} exited ({proc.returncode}):\n{tail}")
        return True

    def _start_containerd(self) -> None:
        root = self.workdir / "containerd"
        cni_conf = self.workdir / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        conflist = {
            "cniVersion": "1.0.0",
            "name": "prewarm-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "pwcni0",
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                    },
                }
            ],
        }
        (cni_conf / "10-prewarm-node.conflist").write_text(json.dumps(conflist, indent=2))
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""\
version = 2
root = "{root / "root"}"
state = "{root / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{root / "ttrpc.sock"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"
[{cri}]
  sandbox_image = "{self.pause_image}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf}"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        Root = "{root / "runc"}"
  [{cri}.registry]
    config_path = "{root / "certs.d"}"
"""
        (root / "certs.d").mkdir(parents=True, exist_ok=True)
        (root / "config.toml").write_text(config)
        self._spawn("containerd", ["containerd", "--config", str(root / "config.toml")])
        _wait(lambda: self._alive("containerd") and self.socket.exists(), 60, "containerd's socket")
        _wait(
            lambda: self._alive("containerd") and self.ctr("version", check=False).returncode == 0,
            60,
            "containerd answering",
        )

    @property
    def registry_image(self) -> str:
        """The busybox image as served by the local registry (a real pull)."""
        ref = self.images["busybox"].ref
        return f"{REGISTRY}/{ref.split('/', 1)[1]}"

    def _start_registry(self) -> None:
        root = self.workdir / "registry"
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.yml").write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
            f"http: {{addr: '{REGISTRY}'}}\n"
        )
        self._spawn("registry", ["docker-registry", "serve", str(root / "config.yml")])
        # containerd pulls from it over plain HTTP (hosts.toml of the registry config_path).
        hosts = self.workdir / "containerd" / "certs.d" / REGISTRY
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(
            f'server = "http://{REGISTRY}"\n[host."http://{REGISTRY}"]\n'
            '  capabilities = ["pull", "resolve", "push"]\n'
        )
        self.ctr("images", "tag", "--force", self.images["busybox"].ref, self.registry_image)

        def pushed() -> bool:
            self._alive("registry")
            push = _run(
                self.netns.wrap(
                    [
                        "ctr",
                        "--address",
                        str(self.socket),
                        "-n",
                        "k8s.io",
                        "images",
                        "push",
                        "--plain-http",
                        self.registry_image,
                    ]
                ),
                check=False,
            )
            return push.returncode == 0

        _wait(pushed, 60, f"the busybox image pushed to the registry on {REGISTRY}")
        # Only the registry holds it under that name: pods naming it pull for real.
        self.ctr("images", "rm", self.registry_image)

    def _make_cgroup_root(self) -> None:
        for controller in _cgroup_controllers():
            path = controller / self.cgroup_root
            path.mkdir(exist_ok=True)
            if controller.name == "cpuset":
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (path / knob).write_text((controller / knob).read_text())

    def _start_kubelet(self, kubelet: Path) -> None:
        pki = self.cluster.pki_dir
        root = self.workdir / "kubelet"
        root.mkdir(parents=True, exist_ok=True)
        (root / "resolv.conf").write_text("")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroup_root}",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "failSwapOn": False,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "resolvConf": str(root / "resolv.conf"),
            # Container logs next to everything else (the default is /var/log/pods).
            "podLogsDir": str(self.workdir / "logs" / "pods"),
            "clusterDomain": "cluster.local",
            # prewarm.devenv.node_dns: Service names only, nothing forwarded.
            "clusterDNS": [NODE_IP],
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "maxPods": 60,
            "registerNode": True,
            "fileCheckFrequency": "5s",
            "syncFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
            "localStorageCapacityIsolation": True,
        }
        (root / "config.yaml").write_text(json.dumps(config, indent=2))
        self._spawn(
            "kubelet",
            [
                str(kubelet),
                f"--config={root / 'config.yaml'}",
                f"--kubeconfig={self.cluster.kubeconfig}",
                f"--root-dir={root / 'root'}",
                f"--cert-dir={root / 'pki'}",
                f"--node-ip={NODE_IP}",
                f"--hostname-override={NODE_NAME}",
                f"--node-labels={NODE_LABEL}=true",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self, proxy: Path) -> None:
        root = self.workdir / "kube-proxy"
        root.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.cluster.kubeconfig)},
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # Not namespaced: kube-proxy must leave the machine's conntrack table alone.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"masqueradeAll": False, "syncPeriod": "5s", "minSyncPeriod": "0s"},
        }
        (root / "config.yaml").write_text(json.dumps(config, indent=2))
        self._spawn("kube-proxy", [str(proxy), f"--config={root / 'config.yaml'}", "--v=1"])

    def _wait_node_ready(self) -> None:
        def ready() -> bool:
            self._alive("kubelet")
            self._alive("kube-proxy")
            out = self.cluster.kubectl(
                "get",
                "node",
                NODE_NAME,
                "-o",
                'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
                check=False,
            ).stdout
            return out.strip() == "True"

        _wait(ready, 180, f"node {NODE_NAME} Ready")

    def tag(self, image: str, as_ref: str) -> None:
        """Give an imported image another name (e.g. the reference a manifest uses),
        so the kubelet finds it with imagePullPolicy IfNotPresent."""
        self.ctr("images", "tag", "--force", image, as_ref)

    def host_path_volume(self, name: str) -> Path:
        """A directory for a hostPath PersistentVolume, removed with the node."""
        path = self.workdir / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
        return path

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return _run(
            ["ctr", "--address", str(self.socket), "-n", "k8s.io", *args],
            check=check,
            timeout=timeout,
        )

    def stop(self) -> None:
        """Take the node down: pods first (through the kubelet), then every process,
        then whatever a crash could have left (shims, mounts, pod namespaces, cgroups)."""
        if "kubelet" in self._procs and self._procs["kubelet"].poll() is None:
            self._drain()
        for component in ("kube-proxy", "kubelet", "registry", "dns"):
            stop_process(self._procs.get(component), timeout_s=20)
        if "containerd" in self._procs and self._procs["containerd"].poll() is None:
            self._remove_containers()
        stop_process(self._procs.get("containerd"), timeout_s=20)
        self._kill_leftover_processes()
        self._unmount_leftovers()
        self._remove_cni_netns()
        self._remove_cgroups()
        for out in self._logs:
            out.close()
        self._logs.clear()
        self._procs.clear()
        if not _mounts_under(str(self.workdir)):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _drain(self) -> None:
        """Evict every pod of the node (a NoExecute taint: controllers cannot put new
        ones there) and wait until containerd runs no container."""
        self.cluster.kubectl(
            "taint",
            "node",
            NODE_NAME,
            "prewarm.dev/teardown=:NoExecute",
            "--overwrite",
            check=False,
        )
        self.cluster.kubectl(
            "delete",
            "pods",
            "--all-namespaces",
            "--field-selector",
            f"spec.nodeName={NODE_NAME}",
            "--grace-period=1",
            "--wait=false",
            check=False,
        )

        pods_dir = str(self.workdir / "kubelet" / "root" / "pods")

        def empty() -> bool:
            left = self.cluster.kubectl(
                "get",
                "pods",
                "--all-namespaces",
                "--field-selector",
                f"spec.nodeName={NODE_NAME}",
                "-o",
                "name",
                check=False,
            )
            if left.returncode != 0 or left.stdout.strip():
                return False
            tasks = self.ctr("tasks", "ls", "-q", check=False).stdout.split()
            return not tasks and not _mounts_under(pods_dir)

        try:
            _wait(empty, 90, "the kubelet to stop every pod")
        except EnvironmentProblem as problem:
            self.notes.append(str(problem))

    def _remove_containers(self) -> None:
        tasks = self.ctr("tasks", "ls", "-q", check=False).stdout.split()
        if tasks:
            self.notes.append(f"tasks killed after the kubelet stopped: {tasks}")
        for task in tasks:
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        for task in tasks:
            for _ in range(50):
                if self.ctr("tasks", "delete", task, check=False).returncode == 0:
                    break
                time.sleep(0.1)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)

    def _kill_leftover_processes(self) -> None:
        for pid, cmdline in _processes_mentioning(str(self.workdir)):
            self.notes.append(f"killed leftover process {pid}: {cmdline[:200]}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait(lambda: not _processes_mentioning(str(self.workdir)), 20, "leftover processes")

    def _unmount_leftovers(self) -> None:
        # The kubelet makes its root directory a shared bind mount of itself and
        # leaves it at exit: expected, not a leftover.
        kubelet_root = str(self.workdir / "kubelet" / "root")
        if kubelet_root in _mounts_under(kubelet_root):
            _run(["umount", kubelet_root], check=False)
        for mount in reversed(_mounts_under(str(self.workdir))):
            self.notes.append(f"unmounted leftover {mount}")
            _run(["umount", "-l", mount], check=False)

    def _remove_cni_netns(self) -> None:
        for name in sorted(_cni_netns() - self._netns_before):
            self.notes.append(f"removed leftover pod network namespace {name}")
            _run(["umount", "-l", str(NETNS_DIR / name)], check=False)
            with contextlib.suppress(OSError):
                (NETNS_DIR / name).unlink()

    def _remove_cgroups(self) -> None:
        for controller in _cgroup_controllers():
            top = controller / self.cgroup_root
            if not top.exists():
                continue
            for path in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if path.is_dir():
                    with contextlib.suppress(OSError):
                        path.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()

    def leftovers(self) -> list[str]:
        """What of this node still exists: processes, mounts, pod namespaces, cgroups."""
        found = [
            f"process {pid}: {cmd[:200]}" for pid, cmd in _processes_mentioning(str(self.workdir))
        ]
        found += [f"mount {m}" for m in _mounts_under(str(self.workdir))]
        found += [f"network namespace {n}" for n in sorted(_cni_netns() - self._netns_before)]
        found += [f"file {p}" for p in sorted(_host_state() - self._host_state_before)]
        found += [
            f"cgroup {controller / self.cgroup_root}"
            for controller in _cgroup_controllers()
            if (controller / self.cgroup_root).exists()
        ]
        return found


def _cgroup_controllers() -> list[Path]:
    """The cgroup v1 hierarchies (one directory per controller), or the v2 root."""
    if (_CGROUP_FS / "cgroup.controllers").exists():
        return [_CGROUP_FS]
    return sorted(
        p
        for p in _CGROUP_FS.iterdir()
        if p.is_dir() and not p.is_symlink() and (p / "cgroup.procs").exists()
    )


def _host_state() -> set[Path]:
    return {p for d in HOST_STATE_DIRS if d.is_dir() for p in d.iterdir()}


def _cni_netns() -> set[str]:
    if not NETNS_DIR.exists():
        return set()
    return {p.name for p in NETNS_DIR.iterdir() if p.name.startswith("cni-")}


def _processes_mentioning(text: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append((int(proc.name), cmdline.strip()))
    return found


def _mounts_under(prefix: str) -> list[str]:
    found: list[str] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].replace("\\040", " ")
        if mount_point.startswith(prefix):
            found.append(mount_point)
    return found


def _run(
    argv: Sequence[str], check: bool = True, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, input=input
    )
    if check and result.returncode != 0:
        raise EnvironmentProblem(
            f"`{' '.join(argv)}` failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return result


def _wait(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        if time.monotonic() > deadline:
            raise EnvironmentProblem(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


@dataclass
class NodeEnv:
    """Everything of the real node, and a way to take it down exactly once."""

    netns: NetNamespace
    cluster: LocalCluster
    pg: PostgresServer
    node: RealNode
    images: dict[str, NodeImage]
    stopped: bool = False
    leftovers: list[str] = field(default_factory=list)

    @property
    def operator_image(self) -> NodeImage:
        return self.images["prewarm"]

    @property
    def busybox_image(self) -> str:
        return self.images["busybox"].ref

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.cluster.kubectl(*args, input=input, check=check, timeout=180).stdout

    def apply(self, namespace: str, obj: dict[str, object]) -> None:
        self.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))

    def ledger_service(self, namespace: str, database: str) -> str:
        """A Service `ledger` in `namespace` whose endpoint is the PostgreSQL server
        on the node address; returns the libpq URL pods use (by ClusterIP: the
        cluster has no DNS)."""
        self.pg.create_database(database)
        self.apply(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "ledger"},
                "spec": {"ports": [{"name": "pg", "port": 5432, "targetPort": self.pg.port}]},
            },
        )
        self.apply(
            namespace,
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "ledger-node",
                    "labels": {"kubernetes.io/service-name": "ledger"},
                },
                "addressType": "IPv4",
                "ports": [{"name": "pg", "port": self.pg.port, "protocol": "TCP"}],
                "endpoints": [{"addresses": [NODE_IP]}],
            },
        )
        ip = self.kubectl(
            "get", "-n", namespace, "service", "ledger", "-o", "jsonpath={.spec.clusterIP}"
        )
        return f"postgresql://postgres@{ip}:5432/{database}"

    def stop(self) -> list[str]:
        if self.stopped:
            return self.leftovers
        self.stopped = True
        try:
            self.node.stop()
        finally:
            self.pg.stop()
            self.cluster.stop()
            self.netns.delete()
        self.leftovers = self.node.leftovers()
        if self.netns.exists():
            self.leftovers.append(f"network namespace {self.netns.name}")
        return self.leftovers


def start_node_env(repo: Path = _REPO) -> NodeEnv:
    """Build the images, then start namespace, control plane, PostgreSQL and node."""
    images = build_images(repo)
    netns = NetNamespace(f"prewarm-node-{os.getpid()}-{uuid.uuid4().hex[:4]}")
    cluster = LocalCluster(
        name=f"prewarm-node-{os.getpid()}", netns=netns.path, advertise_address=NODE_IP, nodes=0
    )
    pg = PostgresServer(netns=netns.path, extra_listen=NODE_IP, trusted_net=POD_CIDR)
    node = RealNode(cluster=cluster, netns=netns, images=images)
    env = NodeEnv(netns=netns, cluster=cluster, pg=pg, node=node, images=images)
    try:
        netns.create()
        cluster.start()
        pg.start()
        node.start()
    except BaseException:
        env.stop()
        raise
    return env
