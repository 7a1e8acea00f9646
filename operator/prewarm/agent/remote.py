"""Running the onClaim hook in a workspace container, through the exec subresource.

The agent sidecar runs the hook in the container(s) named by
PREWARM_AGENT_EXEC_CONTAINERS, so the hook has that container's file system,
environment, working directory and user, in an image that needs no Python:
only a POSIX `/bin/sh` with `mkdir` and `rm` (and `sleep`, used only to stop an
interrupted run).

The exec command line, which the API server's audit log records, is fixed and
holds nothing of the claim: `/bin/sh -s -- <the hook's argv>`. Everything else
(owner, generation, parameters, the owner's credentials) is a script the agent
writes to the exec's **stdin**, which `sh -s` reads and runs, as the container's
user, with umask 077:

1. stop a run of an earlier attempt that is still alive (the agent or its
   stream died mid-hook: closing an exec stream does not kill the command),
   identified by pid *and* start time so a reused pid is never killed;
2. delete the credentials and parameters of every earlier generation;
3. write each credential as a 0600 file into a fresh 0700 directory
   `<root>/gen-G` (root: `/run/prewarm/<container>`, a memory-backed emptyDir)
   and the parameters as `<root>/parameters-gen-G.json`, the bytes written
   with printf octal escapes (binary-safe, no `base64` needed);
4. record its own pid and start time in `<root>/running`, export the
   PREWARM_* variables and `exec` the hook (stdin /dev/null, stderr into stdout).

The kubelet's exit status of the hook comes back on the exec's error channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp

from prewarm.agent.hook import MAX_LOGGED_LINE, HookResult, OutputTail, Redactor
from prewarm.agent.logs import JsonLog
from prewarm.k8s.agent_api import AgentApi, ApiError, ExecStatus

SHELL = "/bin/sh"
STOP_TIMEOUT_SECONDS = 30.0
INTERRUPTED = "interrupted: the exec stream ended without an exit status"


def exec_command(hook: list[str]) -> list[str]:
    """The exec's command line: a shell reading its script from stdin, then the hook."""
    return [SHELL, "-s", "--", *hook]


def sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _printf_bytes(data: bytes) -> str:
    """A printf format that writes exactly `data` (every byte an octal escape)."""
    return "'" + "".join(f"\\{b:03o}" for b in data) + "'"


def valid_key(key: str) -> bool:
    return bool(key) and "/" not in key and key not in (".", "..") and "\0" not in key


# Shell functions of every script: a live process's start time (field 22 of
# /proc/PID/stat, after the command name in parentheses; a zombie has none) and "stop the run
# recorded in $root/running if that very process is still alive".
_PRELUDE = r"""set -e
umask 077
starttime() {
  read -r s < "/proc/$1/stat" || return 1
  s=${s##*) }
  set -- $s
  [ "$1" != Z ] || return 1
  printf '%s' "${20}"
}
tree() {
  all=" $1 "
  changed=1
  while [ "$changed" = 1 ]; do
    changed=0
    for st in /proc/[0-9]*/stat; do
      read -r s 2>/dev/null < "$st" || continue
      pid=${s%% *}
      s=${s##*) }
      set -- $s
      case "$all" in *" $pid "*) continue ;; esac
      case "$all" in *" $2 "*) all="$all$pid "; changed=1 ;; esac
    done
  done
  echo $all
}
stop_recorded_run() {
  if [ -f "$root/running" ]; then
    prev= prevstart=
    read -r prev prevstart < "$root/running" || true
    if [ -n "$prev" ] && [ "$(starttime "$prev" 2>/dev/null || true)" = "$prevstart" ]; then
      echo "prewarm: stopping an earlier run of the hook still running (pid $prev)"
      pids=$(tree "$prev")
      kill -s TERM $pids 2>/dev/null || true
      n=0
      while [ "$n" -lt 10 ] && [ "$(starttime "$prev" 2>/dev/null || true)" = "$prevstart" ]; do
        sleep 1 || break
        n=$((n + 1))
      done
      kill -s KILL $pids 2>/dev/null || true
    fi
    rm -f "$root/running"
  fi
}
"""


def run_script(
    *,
    root: str,
    generation: int,
    owner: str,
    secrets: Mapping[str, bytes],
    parameters: str,
    attempt: int,
    resumed: bool,
) -> bytes:
    """The script `sh -s` reads from stdin (it holds the credentials: never log it)."""
    g = str(generation)
    lines = [
        _PRELUDE,
        f"root={sh_quote(root)}",
        'mkdir -p "$root"',
        "stop_recorded_run",
        'for old in "$root"/gen-* "$root"/parameters-gen-*; do',
        '  if [ -e "$old" ]; then rm -rf "$old"; fi',
        "done",
        f'dir="$root/gen-{g}"',
        'mkdir "$dir"',
    ]
    for key, value in sorted(secrets.items()):
        if valid_key(key):
            lines.append(f'printf {_printf_bytes(value)} > "$dir/"{sh_quote(key)}')
    params = f'"$root/parameters-gen-{g}.json"'
    lines.append(f"printf {_printf_bytes((parameters or '{}').encode())} > {params}")
    lines.append('printf \'%s %s\\n\' "$$" "$(starttime "$$")" > "$root/running"')
    env = {
        "PREWARM_OWNER": owner,
        "PREWARM_REINIT_GENERATION": g,
        "PREWARM_REINIT_ATTEMPT": str(attempt),
    }
    lines += [f"export {k}={sh_quote(v)}" for k, v in env.items()]
    lines += ['export PREWARM_CREDENTIALS_DIR="$dir"', f"export PREWARM_PARAMETERS_FILE={params}"]
    lines.append("export PREWARM_REINIT_RESUMED=1" if resumed else "unset PREWARM_REINIT_RESUMED")
    lines.append('exec "$@" < /dev/null 2>&1')
    return ("\n".join(lines) + "\n").encode()


def stop_script(root: str) -> bytes:
    """Stop the run recorded in `root` (after a timeout)."""
    return (_PRELUDE + f"root={sh_quote(root)}\nstop_recorded_run\n").encode()


class _Lines:
    """Exec output arrives in chunks: split into lines, redact, log and keep the tail."""

    def __init__(self, redact: Redactor, log: JsonLog, tail: OutputTail) -> None:
        self._buffer = b""
        self._redact = redact
        self._log = log
        self._tail = tail

    def _emit(self, raw: bytes) -> None:
        line = self._redact(raw.decode("utf-8", errors="replace").rstrip("\r"))
        self._log.info("hook_output", line=line[:MAX_LOGGED_LINE])
        self._tail.add(line[:MAX_LOGGED_LINE])

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\n")
        for raw in complete:
            self._emit(raw)

    def flush(self) -> None:
        if self._buffer:
            self._emit(self._buffer)
            self._buffer = b""


def describe_exec_error(container: str, error: BaseException) -> str:
    if isinstance(error, ApiError):
        return f"cannot exec in container {container}: {error.status} {error.reason}".strip()
    return f"cannot exec in container {container}: {type(error).__name__}"


def result_of(status: ExecStatus, tail: str) -> HookResult:
    if status.exit_code == 0:
        return HookResult(True)
    if status.exit_code is not None:
        return HookResult(False, f"exit status {status.exit_code}", output=tail)
    if status.message:
        return HookResult(False, f"exec failed: {status.message}", output=tail)
    return HookResult(False, INTERRUPTED, output=tail)


async def run_remote_hook(
    api: AgentApi,
    container: str,
    hook: list[str],
    script: bytes,
    root: str,
    redact: Redactor,
    log: JsonLog,
    time_limit: float,
) -> HookResult:
    """Run the hook in `container` through exec; stop it there on timeout."""
    tail = OutputTail()
    lines = _Lines(redact, log, tail)
    try:
        async with asyncio.timeout(time_limit or None):
            status = await api.exec_in_container(container, exec_command(hook), script, lines.feed)
    except TimeoutError:
        lines.flush()
        await stop_remote_run(api, container, root, log)
        return HookResult(False, f"timed out after {time_limit:g}s", True, tail.text())
    except (ApiError, aiohttp.ClientError, OSError) as error:
        lines.flush()
        return HookResult(False, redact(describe_exec_error(container, error)), output=tail.text())
    lines.flush()
    result = result_of(status, tail.text())
    return HookResult(result.ok, redact(result.reason), result.timed_out, result.output)


async def stop_remote_run(api: AgentApi, container: str, root: str, log: JsonLog) -> None:
    """Best effort: a failure is logged (the next attempt's script stops it too)."""
    try:
        async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
            await api.exec_in_container(
                container, [SHELL, "-s"], stop_script(root), lambda _chunk: None
            )
    except (TimeoutError, ApiError, aiohttp.ClientError, OSError) as error:
        log.warning("hook_stop_failed", error=describe_exec_error(container, error))
