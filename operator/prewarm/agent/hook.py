"""Running the onClaim hook: credentials as files, output redacted, bounded time.

The owner's credentials reach the hook only as files (mode 0600) in a fresh
private directory named by PREWARM_CREDENTIALS_DIR; they are never put in an
environment variable, an annotation or a log line. The hook's own output is
logged line by line after every credential value has been replaced.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prewarm.agent.logs import JsonLog
from prewarm.api.agent_protocol import MAX_OUTPUT_TAIL

REDACTED = "[REDACTED]"
MIN_REDACTED_LENGTH = 4
MAX_LOGGED_LINE = 2000


def default_credentials_root() -> Path:
    return Path(tempfile.gettempdir()) / "prewarm-credentials"


class Redactor:
    """Replaces every credential value (and each of its lines) in a text."""

    def __init__(self, secrets: Mapping[str, bytes]) -> None:
        needles: set[str] = set()
        for value in secrets.values():
            text = value.decode("utf-8", errors="ignore")
            for candidate in (text, text.strip(), *text.splitlines()):
                candidate = candidate.strip()
                if len(candidate) >= MIN_REDACTED_LENGTH:
                    needles.add(candidate)
        # Longest first, so a value containing another is replaced whole.
        self._needles = sorted(needles, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            text = text.replace(needle, REDACTED)
        return text


def parameters_file(credentials_dir: Path) -> Path:
    """Where the claim's parameters of a generation are: next to its credentials
    directory (not in it: a Secret key could have any name)."""
    return credentials_dir.with_name(f"parameters-{credentials_dir.name}.json")


def write_credentials(
    root: Path, generation: int, secrets: Mapping[str, bytes], parameters: str = ""
) -> Path:
    """A fresh directory (0700) for `generation` holding one 0600 file per key;
    and the claim's parameters (`{}` if none: they are not secret) as a 0600
    JSON file at `parameters_file(directory)`."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    target = root / f"gen-{generation}"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(mode=0o700)
    for key, value in secrets.items():
        if not key or "/" in key or key in (".", ".."):
            continue
        fd = os.open(target / key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(value)
    fd = os.open(parameters_file(target), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(parameters or "{}")
    return target


def remove_older_credentials(root: Path, keep: int) -> None:
    """Delete the credentials directories (and parameter files) of generations other than `keep`."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.name.startswith("gen-") and entry.name != f"gen-{keep}":
            shutil.rmtree(entry, ignore_errors=True)
        elif (
            entry.name.startswith("parameters-gen-") and entry.name != f"parameters-gen-{keep}.json"
        ):
            entry.unlink(missing_ok=True)


@dataclass(frozen=True)
class HookResult:
    ok: bool
    reason: str = ""
    timed_out: bool = False
    output: str = ""
    """The redacted tail of the hook's output (at most MAX_OUTPUT_TAIL characters)."""


class OutputTail:
    """The last lines of the hook's output, already redacted, within MAX_OUTPUT_TAIL."""

    def __init__(self) -> None:
        self._lines: collections.deque[str] = collections.deque()
        self._size = 0

    def add(self, line: str) -> None:
        line = line[-MAX_OUTPUT_TAIL:]
        self._lines.append(line)
        self._size += len(line) + 1
        while self._size > MAX_OUTPUT_TAIL + 1 and len(self._lines) > 1:
            self._size -= len(self._lines.popleft()) + 1

    def text(self) -> str:
        return "\n".join(self._lines)[-MAX_OUTPUT_TAIL:]


def hook_environment(
    base: Mapping[str, str],
    *,
    owner: str,
    generation: int,
    credentials_dir: Path,
    resumed: bool,
    attempt: int,
) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("PREWARM_AGENT_TEST_")}
    env.pop("PREWARM_REINIT_RESUMED", None)
    env.update(
        PREWARM_OWNER=owner,
        PREWARM_REINIT_GENERATION=str(generation),
        PREWARM_CREDENTIALS_DIR=str(credentials_dir),
        PREWARM_PARAMETERS_FILE=str(parameters_file(credentials_dir)),
        PREWARM_REINIT_ATTEMPT=str(attempt),
    )
    if resumed:
        env["PREWARM_REINIT_RESUMED"] = "1"
    return env


def _kill_group(process: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def run_hook(
    command: list[str],
    env: Mapping[str, str],
    redact: Redactor,
    log: JsonLog,
    time_limit: float,
) -> HookResult:
    """Run the hook in its own process group; kill the group on timeout or cancellation."""
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as error:
        return HookResult(False, f"cannot start hook: {error.strerror or type(error).__name__}")

    tail = OutputTail()

    async def pump() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            # Redacted before anything keeps it: the log, the tail reported on the pod.
            line = redact(raw.decode("utf-8", errors="replace").rstrip("\n"))
            log.info("hook_output", line=line[:MAX_LOGGED_LINE])
            tail.add(line[:MAX_LOGGED_LINE])

    try:
        async with asyncio.timeout(time_limit or None):
            await pump()
            code = await process.wait()
    except TimeoutError:
        _kill_group(process, signal.SIGKILL)
        await process.wait()
        return HookResult(False, f"timed out after {time_limit:g}s", True, tail.text())
    except asyncio.CancelledError:
        _kill_group(process, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await process.wait()
        _kill_group(process, signal.SIGKILL)
        raise
    if code == 0:
        return HookResult(True)
    if code < 0:
        return HookResult(False, f"killed by signal {-code}", output=tail.text())
    return HookResult(False, f"exit status {code}", output=tail.text())
