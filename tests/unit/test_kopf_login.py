"""kopf logs in as the operator's own client connects (k8s.core.credentials,
handlers/registrations.login): the same kubeconfig setting, the same loader."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from prewarm.handlers import registrations
from prewarm.k8s.core import credentials

CA = b"-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n"


def _kubeconfig(tmp_path: Path, user: dict[str, Any]) -> Path:
    path = tmp_path / "config"
    cluster = {"server": "https://10.0.0.1:6443", "certificate-authority-data": _b64(CA)}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
                "contexts": [
                    {"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "a"}}
                ],
                "current-context": "x",
            }
        )
    )
    return path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_token_user_gives_the_server_its_ca_and_the_bearer_token(tmp_path: Path) -> None:
    found = asyncio.run(credentials(str(_kubeconfig(tmp_path, {"token": "s3cret"})), False))
    assert found.server == "https://10.0.0.1:6443"
    assert (found.scheme, found.token, found.insecure) == ("Bearer", "s3cret", False)
    assert found.ca_path is not None
    assert Path(found.ca_path).read_bytes() == CA
    assert found.certificate_path is None


def test_a_client_certificate_user_gives_its_files(tmp_path: Path) -> None:
    user = {"client-certificate-data": _b64(b"cert"), "client-key-data": _b64(b"key")}
    found = asyncio.run(credentials(str(_kubeconfig(tmp_path, user)), False))
    assert found.token is None
    assert found.certificate_path is not None
    assert found.private_key_path is not None
    assert Path(found.certificate_path).read_bytes() == b"cert"
    assert Path(found.private_key_path).read_bytes() == b"key"


def test_kopf_logs_in_with_the_operators_kubeconfig_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path, {"token": "s3cret"})))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")  # in a pod: the file still wins
    info = asyncio.run(registrations.login())
    assert (info.server, info.scheme, info.token) == ("https://10.0.0.1:6443", "Bearer", "s3cret")
    assert info.ca_path is not None
    assert Path(info.ca_path).read_bytes() == CA


def test_no_way_to_the_api_server_is_a_login_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(kopf.LoginError, match="no way to the API server"):
        asyncio.run(registrations.login())


def test_in_a_pod_the_service_account_token_is_read_again_on_each_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes.aio.config import incluster_config

    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("first")
    ca.write_bytes(CA)
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    first = asyncio.run(registrations.login())
    token.write_text("rotated")  # the kubelet rotates the projected token
    again = asyncio.run(registrations.login())
    assert (first.server, first.scheme, first.token) == ("https://10.96.0.1:443", "bearer", "first")
    assert again.token == "rotated"
    assert first.ca_path == str(ca)
