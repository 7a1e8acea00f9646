"""Issue 17: the hook runs in a workspace container through exec (agent/remote.py).

The exec transport itself is tested on the real node (tests/node/test_reinit.py);
here the script the agent sends over the exec's stdin is run by real POSIX shells
(dash, busybox sh, bash: what workspace images have) exactly as the container
runs it: `<shell> -s -- <hook...>` reading the script from stdin.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from prewarm.agent.remote import (
    INTERRUPTED,
    exec_command,
    result_of,
    run_script,
    stop_script,
)
from prewarm.agent.settings import AgentSettings, SettingsError
from prewarm.agent.state import AgentState, RunHook, decide
from prewarm.api.preset import PresetSpec
from prewarm.k8s.agent_api import ExecStatus, parse_exec_status
from prewarm.planning.render import render_pod

SHELLS = [
    pytest.param([path], id=name) for name in ("dash", "bash") if (path := shutil.which(name))
] + [pytest.param([b, "sh"], id="busybox") for b in filter(None, [shutil.which("busybox")])]
SECRET = bytes(range(256)) + b"%s %d \\n 'q' \"$(x)` end"
SHOW = (
    'echo "$PREWARM_OWNER|$PREWARM_REINIT_GENERATION|$PREWARM_REINIT_ATTEMPT|'
    '${PREWARM_REINIT_RESUMED:-0}|$PREWARM_CREDENTIALS_DIR|$(cat "$PREWARM_PARAMETERS_FILE")"'
)


def _run(shell: list[str], root: Path, generation: int, hook: list[str], **kw: object) -> str:
    args = {
        "root": str(root),
        "generation": generation,
        "owner": "o'brien $HOME",
        "secrets": {"token": SECRET, "ssh key": b"k"},
        "parameters": '{"branch": "a b"}',
        "attempt": 1,
        "resumed": False,
        **kw,
    }
    script = run_script(**args)  # type: ignore[arg-type]
    result = subprocess.run(
        [*shell, *exec_command(hook)[1:]], input=script, capture_output=True, timeout=30
    )
    return f"{result.returncode}:{result.stdout.decode()}"


@pytest.mark.parametrize("shell", SHELLS)
def test_the_script_writes_credentials_as_private_files_and_runs_the_hook(
    shell: list[str], tmp_path: Path
) -> None:
    root = tmp_path / "run" / "workspace"
    out = _run(shell, root, 3, ["/bin/sh", "-c", SHOW + "; echo oops >&2; exit 4"])
    assert out == (
        f"4:o'brien $HOME|3|1|0|{root}/gen-3|" + '{"branch": "a b"}\noops\n'
    )  # the hook's exit status, its stderr merged into its output
    assert (root / "gen-3" / "token").read_bytes() == SECRET  # every byte, binary-safe
    assert (root / "gen-3" / "ssh key").read_bytes() == b"k"
    assert stat.S_IMODE((root / "gen-3").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "gen-3" / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "parameters-gen-3.json").stat().st_mode) == 0o600
    # The next generation: the older one's credentials and parameters are gone.
    out = _run(shell, root, 4, ["/bin/sh", "-c", SHOW], attempt=2, resumed=True)
    assert out.startswith("0:o'brien $HOME|4|2|1|")
    assert sorted(p.name for p in root.iterdir()) == ["gen-4", "parameters-gen-4.json", "running"]


@pytest.mark.parametrize("shell", SHELLS)
def test_a_run_still_alive_from_an_earlier_attempt_is_stopped_first(
    shell: list[str], tmp_path: Path
) -> None:
    root = tmp_path / "workspace"
    script = run_script(
        root=str(root), generation=1, owner="a", secrets={}, parameters="", attempt=1,
        resumed=False,
    )  # fmt: skip
    hook = ["/bin/sh", "-c", "sleep 313; echo not stopped"]  # a hook with a child
    earlier = subprocess.Popen([*shell, "-s", "--", *hook], stdin=subprocess.PIPE)
    assert earlier.stdin is not None
    earlier.stdin.write(script)
    earlier.stdin.close()
    deadline = time.monotonic() + 10
    while not (root / "running").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    # The agent died; its restart runs generation 1 again, resumed: the earlier run
    # (the stream's end did not stop it) is stopped before the hook starts again.
    out = _run(shell, root, 1, ["/bin/sh", "-c", SHOW], attempt=2, resumed=True)
    assert earlier.wait(timeout=15) == -signal.SIGTERM
    assert "stopping an earlier run of the hook still running" in out
    assert not _running("sleep\x00313\x00"), "the earlier hook's child outlived it"
    assert out.splitlines()[-1].startswith("o'brien $HOME|1|2|1|")


def _running(cmdline: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                text = (proc / "cmdline").read_bytes().decode(errors="replace")
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if text == cmdline and state != "Z":
                found.append(int(proc.name))
    return found


@pytest.mark.parametrize("shell", SHELLS)
def test_a_recorded_pid_now_used_by_another_process_is_not_killed(
    shell: list[str], tmp_path: Path
) -> None:
    root = tmp_path / "workspace"
    root.mkdir()
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        # Same pid, another start time: what a container restart can leave behind.
        (root / "running").write_text(f"{bystander.pid} 1\n")
        result = subprocess.run(
            [*shell, "-s"], input=stop_script(str(root)), capture_output=True, timeout=30
        )
        assert result.returncode == 0, result.stderr
        assert bystander.poll() is None
        assert not (root / "running").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_nothing_of_the_claim_is_on_the_exec_command_line() -> None:
    # The API server's audit log records the command: only the preset's hook is there.
    assert exec_command(["/hooks/x", "--flag"]) == ["/bin/sh", "-s", "--", "/hooks/x", "--flag"]
    script = run_script(
        root="/run/prewarm/w", generation=1, owner="alice", secrets={"t": b"s3cret"},
        parameters="{}", attempt=1, resumed=False,
    )  # fmt: skip
    assert b"s3cret" not in script  # octal escapes only, so no log line can show it whole
    assert b"\\163\\063\\143\\162\\145\\164" in script


def test_exec_status_and_hook_result() -> None:
    assert parse_exec_status(b'{"metadata":{},"status":"Success"}') == ExecStatus(0)
    failure = (
        b'{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit'
        b' code: error executing command [sh], exit code 3","reason":"NonZeroExitCode",'
        b'"details":{"causes":[{"reason":"ExitCode","message":"3"}]}}'
    )
    assert parse_exec_status(failure) == ExecStatus(3)
    missing = b'{"status":"Failure","message":"exec: \\"/bin/sh\\": no such file","reason":"X"}'
    assert parse_exec_status(missing) == ExecStatus(None, 'exec: "/bin/sh": no such file')
    assert result_of(ExecStatus(0), "").ok
    assert result_of(ExecStatus(3), "tail").reason == "exit status 3"
    assert result_of(ExecStatus(None, "no sh"), "").reason == "exec failed: no sh"
    assert result_of(ExecStatus(None), "").reason == INTERRUPTED


def test_an_interrupted_run_is_retried_as_resumed() -> None:
    state = AgentState().started(2).failed(2, INTERRUPTED, interrupted=True)
    assert decide(state, 2, "bob") == RunHook(2, "bob", resumed=True, attempt=2)
    state = AgentState().started(2).failed(2, "exit status 1")
    assert decide(state, 2, "bob") == RunHook(2, "bob", resumed=False, attempt=2)


BASE_ENV = {
    "PREWARM_POD_NAME": "ws",
    "PREWARM_POD_NAMESPACE": "ns",
    "PREWARM_CONTAINER": "prewarm-agent",
    "PREWARM_ON_CLAIM": '["/bin/true"]',
}


def test_one_agent_per_target_container_each_under_its_name() -> None:
    settings = AgentSettings.from_env(
        {**BASE_ENV, "PREWARM_AGENT_EXEC_CONTAINERS": "workspace, tools,workspace"}
    )
    targets = settings.for_targets()
    assert [(t.container, t.exec_container) for t in targets] == [
        ("workspace", "workspace"),
        ("tools", "tools"),
    ]
    local = AgentSettings.from_env(BASE_ENV).for_targets()
    assert [(t.container, t.exec_container) for t in local] == [("prewarm-agent", "")]
    with pytest.raises(SettingsError, match="PREWARM_AGENT_EXEC_CONTAINERS"):
        AgentSettings.from_env({**BASE_ENV, "PREWARM_AGENT_EXEC_CONTAINERS": "x" * 50})


def _spec(agent: dict[str, object], names: tuple[str, ...] = ("workspace", "tools")) -> PresetSpec:
    containers = [{"name": n, "image": "busybox"} for n in names]
    return PresetSpec.model_validate(
        {"template": {"spec": {"containers": containers}}, "agent": agent}
    )


def test_the_pod_wires_the_hook_into_its_containers() -> None:
    spec = _spec({"onClaim": ["/bin/true"], "containers": ["workspace", "tools"]})
    pod = render_pod(spec, "ns", "p", "h", "ws-1", "uid-1", agent_image="prewarm:1")
    assert pod["metadata"]["annotations"]["prewarm.dev/agents"] == "workspace,tools"
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    for name in ("workspace", "tools"):
        assert {"name": "prewarm-reinit", "mountPath": "/run/prewarm"} in containers[name][
            "volumeMounts"
        ]
    agent_env = {e["name"]: e.get("value") for e in containers["prewarm-agent"]["env"]}
    assert agent_env["PREWARM_AGENT_EXEC_CONTAINERS"] == "workspace,tools"
    assert "volumeMounts" not in containers["prewarm-agent"] or all(
        m["name"] != "prewarm-reinit" for m in containers["prewarm-agent"]["volumeMounts"]
    )
    # Default: the first container only.
    pod = render_pod(_spec({"onClaim": ["/bin/true"]}), "ns", "p", "h", "ws-1", "uid-1")
    assert pod["metadata"]["annotations"]["prewarm.dev/agents"] == "workspace"
    tools = next(c for c in pod["spec"]["containers"] if c["name"] == "tools")
    assert "volumeMounts" not in tools


def test_hook_containers_must_exist_and_fit_annotation_keys() -> None:
    with pytest.raises(ValueError, match="no container named nope"):
        _spec({"onClaim": ["/bin/true"], "containers": ["nope"]})
    with pytest.raises(ValueError, match="longer than 49"):
        _spec({"onClaim": ["/bin/true"]}, names=("w" * 50,))
    assert _spec({}).hook_containers() == []


def test_the_exec_command_runs_with_a_minimal_environment(tmp_path: Path) -> None:
    # The container's own environment reaches the hook; the agent adds only PREWARM_*.
    script = run_script(
        root=str(tmp_path / "r"), generation=1, owner="a", secrets={}, parameters="",
        attempt=1, resumed=False,
    )  # fmt: skip
    env = {"PATH": os.environ["PATH"], "PROJECT": "mine"}
    result = subprocess.run(
        ["/bin/sh", *exec_command(["/bin/sh", "-c", 'echo "$PROJECT $PREWARM_OWNER"'])[1:]],
        input=script, env=env, capture_output=True, timeout=30,
    )  # fmt: skip
    assert result.stdout == b"mine a\n"
