"""Helpers of the chart tier: render the chart with helm, read objects, mint SA kubeconfigs."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from prewarm.devenv.cluster import Binaries, LocalCluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "prewarm"
SCHEMA = CHART / "values.schema.json"

Manifest = dict[str, Any]


def helm_binary() -> Path:
    return Binaries.from_cache().helm


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, timeout=120, check=check
    )


def set_args(values: dict[str, str]) -> list[str]:
    out: list[str] = []
    for key, value in values.items():
        out += ["--set", f"{key}={value}"]
    return out


def template(
    *extra: str,
    release: str = "prewarm",
    namespace: str = "prewarm-system",
    **values: str,
) -> list[Manifest]:
    """`helm template` of the chart as a list of objects (values as --set key=value)."""
    result = helm(
        "template", release, str(CHART), "--namespace", namespace, *extra, *set_args(values)
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def template_error(*extra: str) -> str:
    """The error of a `helm template` that must fail."""
    result = helm("template", "prewarm", str(CHART), *extra, check=False)
    assert result.returncode != 0, f"helm template {extra} succeeded but should not have"
    return result.stderr


def find(docs: Iterable[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: Iterable[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kinds(docs: Iterable[Manifest]) -> set[str]:
    return {d["kind"] for d in docs}


def kget(cluster: LocalCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def token_kubeconfig(cluster: LocalCluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount, with a freshly minted token."""
    token = cluster.kubectl(
        "create", "token", account, "-n", namespace, "--duration=2h"
    ).stdout.strip()
    config = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    user = f"system:serviceaccount:{namespace}:{account}"
    config["users"] = [{"name": user, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = user
    path.write_text(yaml.safe_dump(config))
    return path


def schema_keys(schema: dict[str, Any] | None = None, prefix: str = "") -> set[str]:
    """Every dotted key that values.schema.json declares (objects with properties)."""
    schema = schema if schema is not None else json.loads(SCHEMA.read_text())
    keys: set[str] = set()
    for name, sub in (schema.get("properties") or {}).items():
        key = f"{prefix}{name}"
        keys.add(key)
        if sub.get("properties"):
            keys |= schema_keys(sub, key + ".")
    return keys


def bumped_chart(dest: Path, version: str = "", app_version: str = "") -> Path:
    """A copy of the chart whose version (and appVersion) is the next minor version."""
    chart = dest / "prewarm"
    shutil.copytree(CHART, chart, symlinks=False)
    meta_path = chart / "Chart.yaml"
    meta = yaml.safe_load(meta_path.read_text())

    def next_minor(v: str) -> str:
        major, minor, _patch = v.split("-")[0].split(".")
        return f"{major}.{int(minor) + 1}.0"

    meta["version"] = version or next_minor(meta["version"])
    meta["appVersion"] = app_version or next_minor(str(meta["appVersion"]))
    meta_path.write_text(yaml.safe_dump(meta, sort_keys=False))
    return chart
