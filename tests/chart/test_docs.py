"""docs/install.md stays true: every path, value, object name and command it uses exists."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml
from tests.chart.support import CHART, REPO, one, schema_keys, template

from prewarm.cli import build_parser

INSTALL = REPO / "docs" / "install.md"


def commands() -> list[list[str]]:
    """Every shell command in the page's ```sh blocks, continuation lines joined."""
    text = INSTALL.read_text()
    out: list[list[str]] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip().rstrip("&").strip()
            if line and not line.startswith("#"):
                out.append(shlex.split(line))
    return out


def with_prefix(*prefix: str) -> list[list[str]]:
    return [c for c in commands() if c[: len(prefix)] == list(prefix)]


def flag_values(command: list[str], flag: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command[:-1]) if word == flag]


def test_the_page_has_the_kind_steps() -> None:
    assert with_prefix("kind", "create", "cluster")
    assert with_prefix("docker", "build")
    assert with_prefix("kind", "load", "docker-image")
    assert with_prefix("helm", "install")
    assert "`kind delete cluster --name prewarm`" in INSTALL.read_text()


def test_the_image_built_is_the_image_loaded_and_installed() -> None:
    (build,) = with_prefix("docker", "build", "-t", "prewarm:dev")
    assert build[-1] == "."
    assert (REPO / "Dockerfile").is_file()
    (load,) = with_prefix("kind", "load", "docker-image")
    assert load[3] == "prewarm:dev"
    kind_install = next(c for c in with_prefix("helm", "install") if "image.tag=dev" in c)
    sets = dict(v.split("=", 1) for v in flag_values(kind_install, "--set"))
    assert f"{sets['image.repository']}:{sets['image.tag']}" == "prewarm:dev"
    # The names of the kind cluster agree.
    names = {c[c.index("--name") + 1] for c in commands() if c[0] == "kind" and "--name" in c}
    assert len(names) == 1


def test_the_image_entrypoint_is_prewarm_run_and_carries_the_agent() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["/opt/prewarm/bin/prewarm"]' in text
    assert 'CMD ["run"]' in text
    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"run", "agent"} <= set(choices)
    page = INSTALL.read_text()
    assert "`prewarm run`" in page
    assert "`prewarm agent`" in page


@pytest.mark.parametrize(
    "command",
    with_prefix("helm", "install"),
    ids=lambda c: " ".join(c[:4]),
)
def test_helm_commands_use_the_chart_existing_files_and_valid_values(command: list[str]) -> None:
    chart = command[3]
    assert (REPO / chart / "Chart.yaml").is_file(), chart
    assert (REPO / chart).resolve() == CHART.resolve()
    files = flag_values(command, "-f")
    for f in files:
        assert (REPO / f).is_file(), f
    declared = schema_keys()
    sets = flag_values(command, "--set")
    for item in sets:
        key = item.split("=", 1)[0]
        assert key in declared, f"docs/install.md sets {key}, which the chart does not have"
    # The chart renders with exactly these values (the schema validates them).
    extra: list[str] = []
    for f in files:
        extra += ["-f", str(REPO / f)]
    for item in sets:
        extra += ["--set", item.replace("REGISTRY", "registry.example")]
    namespace = flag_values(command, "--namespace") or flag_values(command, "-n")
    docs = template(*extra, release=command[2], namespace=namespace[0])
    assert one(docs, "Deployment", "prewarm")


def test_object_names_on_the_page_exist_in_the_chart() -> None:
    docs = template(release="prewarm", namespace="prewarm-system")
    deployment = one(docs, "Deployment", "prewarm")
    containers = [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    one(docs, "Service", "prewarm-metrics")
    page = INSTALL.read_text()
    for ref in re.findall(r"(?:deployment|svc)/[a-z0-9-]+", page):
        kind, name = ref.split("/")
        one(docs, {"deployment": "Deployment", "svc": "Service"}[kind], name)
    for command in with_prefix("kubectl", "-n", "prewarm-system", "set", "image"):
        container = command[6].split("=", 1)[0]
        assert container in containers
    for command in with_prefix("kubectl", "-n", "prewarm-system", "port-forward"):
        port = int(command[-1])
        assert (
            port
            == deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        )


def test_files_and_samples_on_the_page_exist_and_fit_together() -> None:
    for command in commands():
        if command[0] == "kubectl" and "apply" in command:
            for path in flag_values(command, "-f"):
                assert (REPO / path).exists(), path
    # The claim sample refers to the preset sample and to no Secret the page does
    # not create (tests/e2e/test_samples.py applies both and sees the claim Bound).
    claim = yaml.safe_load((REPO / "crds/samples/workspaceclaim.yaml").read_text())
    preset = yaml.safe_load((REPO / "crds/samples/preset-basic.yaml").read_text())
    assert claim["spec"]["presetRef"]["name"] == preset["metadata"]["name"]
    secrets = [c[4] for c in with_prefix("kubectl", "create", "secret", "generic")]
    assert claim["spec"].get("ownerSecretRef", {"name": None})["name"] in [*secrets, None]
    # The production profile reads the Secret the page creates, under the key it uses.
    production = yaml.safe_load((CHART / "values-production.yaml").read_text())
    created_secrets = with_prefix("kubectl", "-n", "prewarm-system", "create", "secret", "generic")
    by_name = {c[6]: c for c in created_secrets}
    assert len(by_name) == len(created_secrets) == 2, created_secrets
    created = by_name[production["database"]["existingSecret"]]
    (literal,) = [w.split("=", 1)[1] for w in created if w.startswith("--from-literal=")]
    assert literal.split("=", 1)[0] == production["database"]["existingSecretKey"]
    # The kubectl path: the password Secret that deploy/prewarm.yaml reads and lacks.
    (password,) = [
        w.split("=", 1)[1] for w in by_name["prewarm-postgresql"] if w.startswith("--from-literal=")
    ]
    assert password.split("=", 1)[0] == "password"
    # The kubectl path's manifest exists and installs into the namespace the page uses.
    manifest = [d for d in yaml.safe_load_all((REPO / "deploy/prewarm.yaml").read_text()) if d]
    assert manifest[0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "prewarm-system",
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
        },
    }


def test_links_on_the_page_resolve() -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", INSTALL.read_text()):
        if target.startswith("http"):
            continue
        assert (INSTALL.parent / target).exists(), target


def test_every_documented_value_key_is_a_chart_value() -> None:
    declared = schema_keys()
    page = INSTALL.read_text()
    for key in re.findall(r"`([a-zA-Z]+(?:\.[a-zA-Z]+)+)(?:=[^`]*)?`", page):
        if (
            key.split(".")[0]
            in json.loads((CHART / "values.schema.json").read_text())["properties"]
        ):
            assert key in declared, key
