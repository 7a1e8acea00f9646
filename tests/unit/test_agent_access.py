"""render_agent_access / agent_container / agent_volumes, and the agent's small helpers."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from prewarm.agent.hook import (
    Redactor,
    hook_environment,
    remove_older_credentials,
    write_credentials,
)
from prewarm.agent.settings import AgentSettings, SettingsError
from prewarm.api.agent_protocol import (
    MAX_AGENT_CONTAINER_NAME,
    reinit_done_annotation,
    reinit_failed_annotation,
)
from prewarm.planning.agent_access import (
    agent_container,
    agent_volumes,
    hook_mount,
    render_agent_access,
)

OWNER_REF = {
    "apiVersion": "prewarm.dev/v1alpha1",
    "kind": "PrebuiltWorkspace",
    "name": "ws-1",
    "uid": "uid-1",
    "controller": True,
    "blockOwnerDeletion": True,
}


def test_four_manifests_named_per_workspace_and_owned_by_it() -> None:
    manifests = render_agent_access("ns", "ws-1", "uid-1")
    assert [(m["kind"], m["metadata"]["name"]) for m in manifests] == [
        ("ServiceAccount", "ws-1-agent"),
        ("Role", "ws-1-agent"),
        ("RoleBinding", "ws-1-agent"),
        ("Secret", "ws-1-owner"),
    ]
    for m in manifests:
        assert m["metadata"]["namespace"] == "ns"
        assert m["metadata"]["ownerReferences"] == [OWNER_REF]
        assert m["metadata"]["labels"] == {"prewarm.dev/workspace": "ws-1"}


def test_role_allows_exactly_its_own_pod_and_owner_secret() -> None:
    role = render_agent_access("ns", "ws-1", "uid-1")[1]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "resourceNames": ["ws-1"],
            "verbs": ["get", "watch", "list", "patch"],
        },
        {
            "apiGroups": [""],
            "resources": ["pods/exec"],
            "resourceNames": ["ws-1"],
            "verbs": ["get", "create"],
        },
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["ws-1-owner"],
            "verbs": ["get"],
        },
    ]


def test_binding_and_account() -> None:
    account, _, binding, secret = render_agent_access("ns", "ws-1", "uid-1")
    assert account["automountServiceAccountToken"] is False
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "ws-1-agent",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ws-1-agent", "namespace": "ns"}
    ]
    assert secret["data"] == {}
    assert secret["type"] == "Opaque"


def test_render_is_pure_and_unshared() -> None:
    a = render_agent_access("ns", "ws-1", "uid-1")
    a[0]["metadata"]["labels"]["x"] = "y"
    assert render_agent_access("ns", "ws-1", "uid-1")[0]["metadata"]["labels"] == {
        "prewarm.dev/workspace": "ws-1"
    }


def test_agent_container() -> None:
    c = agent_container("img:1", on_claim=["/bin/setup", "--for-owner"])
    assert c["name"] == "prewarm-agent"
    assert c["image"] == "img:1"
    assert c["command"] == ["prewarm", "agent"]
    env = {e["name"]: e for e in c["env"]}
    assert env["PREWARM_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["PREWARM_POD_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert env["PREWARM_CONTAINER"]["value"] == "prewarm-agent"
    assert json.loads(env["PREWARM_ON_CLAIM"]["value"]) == ["/bin/setup", "--for-owner"]
    assert env["PREWARM_PODINFO"]["value"] == "/etc/prewarm/podinfo/annotations"
    assert env["PREWARM_STATE_DIR"]["value"] == "/var/lib/prewarm-agent"
    assert c["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    # All but the hook's volume, which only the containers the hook runs in mount.
    volumes = {v["name"] for v in agent_volumes()} - {hook_mount()["name"]}
    assert set(mounts) == volumes
    assert mounts["prewarm-podinfo"]["mountPath"] == "/etc/prewarm/podinfo"
    assert mounts["prewarm-podinfo"]["readOnly"] is True
    assert mounts["prewarm-agent-state"]["mountPath"] == "/var/lib/prewarm-agent"
    assert mounts["prewarm-agent-token"]["mountPath"] == (
        "/var/run/secrets/kubernetes.io/serviceaccount"
    )
    assert agent_container("i", "second", on_claim=["x"])["name"] == "second"


def test_agent_container_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="on_claim"):
        agent_container("img", on_claim=[])
    with pytest.raises(ValueError, match="annotation key"):
        agent_container("img", "c" * (MAX_AGENT_CONTAINER_NAME + 1), on_claim=["x"])
    longest = "c" * MAX_AGENT_CONTAINER_NAME
    assert len(reinit_failed_annotation(longest).split("/", 1)[1]) == 63


def test_agent_volumes() -> None:
    volumes = {v["name"]: v for v in agent_volumes()}
    assert volumes["prewarm-podinfo"]["downwardAPI"]["items"] == [
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}
    ]
    assert volumes["prewarm-agent-state"] == {"name": "prewarm-agent-state", "emptyDir": {}}
    sources = volumes["prewarm-agent-token"]["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert {"key": "ca.crt", "path": "ca.crt"} in sources[1]["configMap"]["items"]
    # Restricted PSS volume types only.
    allowed = {"downwardAPI", "emptyDir", "projected", "configMap", "secret"}
    for v in volumes.values():
        assert set(v) - {"name"} <= allowed


def test_annotation_names() -> None:
    assert reinit_done_annotation("prewarm-agent") == "prewarm.dev/reinit-done.prewarm-agent"
    assert reinit_failed_annotation("a") == "prewarm.dev/reinit-failed.a"


# --- agent helpers --------------------------------------------------------------------------


def test_credentials_are_private_files_in_a_fresh_dir(tmp_path: Path) -> None:
    root = tmp_path / "creds"
    first = write_credentials(root, 1, {"token": b"t1", "stale": b"s"})
    again = write_credentials(root, 1, {"token": b"t2"})
    assert first == again
    assert sorted(p.name for p in again.iterdir()) == ["token"]
    assert (again / "token").read_bytes() == b"t2"
    assert stat.S_IMODE((again / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE(again.stat().st_mode) == 0o700
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    # keys that would escape the directory are skipped
    odd = write_credentials(root, 2, {"../evil": b"x", "..": b"x", "ok": b"y"})
    assert sorted(p.name for p in odd.iterdir()) == ["ok"]


def test_claim_parameters_are_a_json_file_next_to_the_credentials(tmp_path: Path) -> None:
    """Issue 16: the hook reads the claim's parameters from PREWARM_PARAMETERS_FILE."""
    root = tmp_path / "creds"
    first = write_credentials(root, 1, {"token": b"t"}, '{"branch": "main"}')
    assert sorted(p.name for p in first.iterdir()) == ["token"]  # not among the Secret's keys
    env = hook_environment(
        {}, owner="a", generation=1, credentials_dir=first, resumed=False, attempt=1
    )
    path = Path(env["PREWARM_PARAMETERS_FILE"])
    assert json.loads(path.read_text()) == {"branch": "main"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A claim without parameters still gets a file: an empty object.
    second = write_credentials(root, 2, {})
    second_file = root / "parameters-gen-2.json"
    assert json.loads(second_file.read_text()) == {}
    # Once generation 2 is done, generation 1's parameters go with its credentials.
    remove_older_credentials(root, keep=2)
    assert not path.exists()
    assert not first.exists()
    assert second_file.exists()
    assert second.exists()


def test_redactor() -> None:
    redact = Redactor({"token": b"hunter22\n", "pem": b"line-one\nline-two\n", "short": b"ab"})
    assert redact("pw=hunter22 end") == "pw=[REDACTED] end"
    assert redact("x line-two y") == "x [REDACTED] y"
    assert redact("ab stays") == "ab stays"  # too short to redact without mangling output


def test_hook_environment_carries_no_credentials() -> None:
    env = hook_environment(
        {
            "PATH": "/bin",
            "PREWARM_AGENT_TEST_CHECKPOINT": "after-hook",
            "PREWARM_REINIT_RESUMED": "1",
        },
        owner="alice",
        generation=3,
        credentials_dir=Path("/tmp/c/gen-3"),
        resumed=False,
        attempt=1,
    )
    assert env == {
        "PATH": "/bin",
        "PREWARM_OWNER": "alice",
        "PREWARM_REINIT_GENERATION": "3",
        "PREWARM_CREDENTIALS_DIR": "/tmp/c/gen-3",
        "PREWARM_PARAMETERS_FILE": "/tmp/c/parameters-gen-3.json",
        "PREWARM_REINIT_ATTEMPT": "1",
    }
    resumed = hook_environment({}, owner="a", generation=1, credentials_dir=Path("/x"),
                               resumed=True, attempt=2)  # fmt: skip
    assert resumed["PREWARM_REINIT_RESUMED"] == "1"


def test_settings_from_env() -> None:
    base = {
        "PREWARM_POD_NAME": "ws-1",
        "PREWARM_POD_NAMESPACE": "ns",
        "PREWARM_CONTAINER": "prewarm-agent",
        "PREWARM_ON_CLAIM": '["/bin/setup"]',
    }
    s = AgentSettings.from_env(base)
    assert (s.pod_name, s.namespace, s.container, s.on_claim) == (
        "ws-1", "ns", "prewarm-agent", ["/bin/setup"]
    )  # fmt: skip
    assert str(s.podinfo) == "/etc/prewarm/podinfo/annotations"
    assert str(s.state_dir) == "/var/lib/prewarm-agent"
    assert s.use_api is True
    assert AgentSettings.from_env({**base, "PREWARM_AGENT_USE_API": "false"}).use_api is False
    for bad in (
        {"PREWARM_ON_CLAIM": "not json"},
        {"PREWARM_ON_CLAIM": "[]"},
        {"PREWARM_ON_CLAIM": '"/bin/setup"'},
        {"PREWARM_POD_NAME": ""},
        {"PREWARM_AGENT_USE_API": "maybe"},
        {"PREWARM_AGENT_TEST_CHECKPOINT": "nowhere"},
    ):
        with pytest.raises(SettingsError):
            AgentSettings.from_env({**base, **bad})


def test_importing_the_agent_package_loads_no_io_library() -> None:
    import subprocess
    import sys

    operator = Path(__file__).resolve().parents[2] / "operator"
    probe = (
        "import sys, prewarm.agent, prewarm.agent.podinfo, prewarm.agent.state, "
        "prewarm.planning.agent_access\n"
        "print(','.join(m for m in ('kubernetes','psycopg','kopf') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env={"PYTHONPATH": str(operator)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == ""


def test_agent_package_imports_kubernetes_only_through_k8s() -> None:
    root = Path(__file__).resolve().parents[2] / "operator" / "prewarm" / "agent"
    for path in root.glob("*.py"):
        text = path.read_text()
        for forbidden in ("import kubernetes", "from kubernetes", "psycopg"):
            assert forbidden not in text, f"{path.name}: {forbidden}"


def _kubelet_expand(value: str, env: dict[str, str]) -> str:
    """What the kubelet does to an env value (the documented `$(VAR)` expansion:
    `$$` is a literal `$`, a known `$(NAME)` its value, anything else as is)."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "$" and i + 1 < len(value):
            nxt = value[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = value.find(")", i + 2)
                if end != -1:
                    name = value[i + 2 : end]
                    out.append(env.get(name, f"$({name})"))
                    i = end + 1
                    continue
        out.append(value[i])
        i += 1
    return "".join(out)


def test_the_hook_reaches_the_agent_as_written_through_env_expansion() -> None:
    # Found on the real node: a hook's `$$` arrived as `$` (the kubelet expands env values).
    hook = ["/bin/sh", "-c", 'cat /proc/$$/environ; echo $(date) "$(PREWARM_POD_NAME)" $HOME $']
    c = agent_container("prewarm:1", on_claim=hook)
    env = {e["name"]: e for e in c["env"]}
    defined = {"PREWARM_POD_NAME": "ws-1", "PREWARM_CONTAINER": "prewarm-agent"}
    assert json.loads(_kubelet_expand(env["PREWARM_ON_CLAIM"]["value"], defined)) == hook
