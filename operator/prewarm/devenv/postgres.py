"""A throw-away PostgreSQL server in a temp dir, for tests and `prewarm dev`.

Uses the distribution's server binaries (Debian: /usr/lib/postgresql/<major>/bin).
Trust auth, fsync off, loopback only, unix socket inside the temp dir: fast and
invisible to anything else on the machine. Everything is stopped and removed on
exit, whatever the exit.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from prewarm.devenv.errors import EnvironmentProblem

HOST = "127.0.0.1"
SUPERUSER = "postgres"
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_INSTALL_HINT = "install Debian's postgresql: apt-get install -y postgresql"
# Database names we create are plain identifiers, so they need no quoting rules.
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_START_ATTEMPTS = 3
_LOG_TAIL_LINES = 8


class PostgresProblem(EnvironmentProblem):
    """The throw-away PostgreSQL cannot be found, started or used."""


class PortInUse(PostgresProblem):
    """Something else already listens on the port we wanted."""


def find_bin_dir() -> Path:
    """The directory of the newest installed server (initdb, pg_ctl, postgres, psql)."""
    candidates = [p for p in _DEBIAN_ROOT.glob("*/bin") if (p / "pg_ctl").is_file()]
    if candidates:
        return max(candidates, key=_major_version)
    # Non-Debian systems (Homebrew, Fedora) put the server binaries on PATH.
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl and (Path(pg_ctl).parent / "initdb").is_file():
        return Path(pg_ctl).parent
    raise PostgresProblem(f"PostgreSQL server binaries not found; {_INSTALL_HINT}")


def _major_version(bin_dir: Path) -> tuple[int, ...]:
    digits = re.findall(r"\d+", bin_dir.parent.name)
    return tuple(int(d) for d in digits) or (0,)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _child_env() -> dict[str, str]:
    # Stray PGHOST/PGPORT/PGDATA of the caller must not redirect our tools.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


class PostgresServer:
    """A PostgreSQL cluster that lives exactly as long as this object is entered.

    >>> with PostgresServer() as pg:
    ...     pg.create_database("prewarm")
    ...     dsn = pg.dsn("prewarm")
    """

    def __init__(
        self,
        port: int | None = None,
        bin_dir: Path | None = None,
        netns: Path | None = None,
        extra_listen: str = "",
        trusted_net: str = "",
    ) -> None:
        """`netns` (a /run/netns path) runs the server in that network namespace;
        `extra_listen` adds a listen address there and `trusted_net` a CIDR allowed
        to connect (the real-node tier: pods reach the server through a Service)."""
        self._requested_port = port
        self._bin_dir = bin_dir
        self._netns = netns
        self._extra_listen = extra_listen
        self._trusted_net = trusted_net
        self._root: Path | None = None
        self._port: int | None = None
        self._running = False

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._root is not None:
            raise PostgresProblem("this PostgresServer is already started")
        bin_dir = self._bin_dir or find_bin_dir()
        self._bin_dir = bin_dir
        if self._requested_port is not None and not _port_is_free(self._requested_port):
            raise PortInUse(f"port {self._requested_port} on {HOST} is already in use")
        try:
            self._root = Path(tempfile.mkdtemp(prefix="prewarm-pg-"))
            self._give_to_server_user(self._root)
            self._initdb()
            self._start_server()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server and remove its files; safe to call twice or after a failed start."""
        root, self._root = self._root, None
        if root is None:
            return
        try:
            if self._running or (root / "data" / "postmaster.pid").exists():
                self._stop_server(root)
        finally:
            self._running = False
            shutil.rmtree(root, ignore_errors=True)

    def pause(self) -> None:
        """Take the server down, keeping its data and port (an outage, for tests)."""
        root = self._require_root()
        self._stop_server(root)
        self._running = False

    def resume(self) -> None:
        """Bring a paused server back on the same port with the same data."""
        if self._port is None:
            raise PostgresProblem("resume() needs a server that was started and paused")
        self._pg_ctl_start(self._port)
        self._running = True

    # -- connection strings ----------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None or not self._running:
            raise PostgresProblem("the PostgreSQL server is not running")
        return self._port

    @property
    def host(self) -> str:
        return HOST

    @property
    def admin_dsn(self) -> str:
        """The superuser's connection to the maintenance database `postgres`."""
        return self.dsn("postgres")

    def dsn(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{dbname}"

    @property
    def log_path(self) -> Path:
        return self._require_root() / "postgres.log"

    # -- databases -------------------------------------------------------------------

    def create_database(self, name: str, template: str | None = None) -> None:
        """CREATE DATABASE; `template` copies an existing (e.g. already migrated) database."""
        statement = f'CREATE DATABASE "{_checked_name(name)}"'
        if template is not None:
            statement += f' TEMPLATE "{_checked_name(template)}"'
        self._admin_sql(statement)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE, closing any connection a test left open; missing is fine."""
        self._admin_sql(f'DROP DATABASE IF EXISTS "{_checked_name(name)}" WITH (FORCE)')

    def _admin_sql(self, statement: str) -> None:
        psql = self._tool("psql")
        result = subprocess.run(
            self._wrap([str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.admin_dsn]),
            input=statement,
            capture_output=True,
            text=True,
            env=_child_env(),
            check=False,
        )
        if result.returncode != 0:
            raise PostgresProblem(f"{statement} failed: {_one_line(result.stderr)}")

    # -- internals -------------------------------------------------------------------

    def _initdb(self) -> None:
        root = self._require_root()
        self._run_as_server_user(
            [
                str(self._tool("initdb")),
                "-D",
                str(root / "data"),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            what="initdb",
        )
        settings = {
            "listen_addresses": f"'{HOST},{self._extra_listen}'"
            if self._extra_listen
            else f"'{HOST}'",
            "unix_socket_directories": f"'{root}'",
            # A throw-away cluster: durability costs time and buys nothing.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        with (root / "data" / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        if self._trusted_net:
            with (root / "data" / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {self._trusted_net} trust\n")

    def _start_server(self) -> None:
        attempts = 1 if self._requested_port is not None else _START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port()
            try:
                self._pg_ctl_start(port)
            except PortInUse:
                # Another process took the free port between our probe and the bind.
                if attempt == attempts:
                    raise
                continue
            self._port = port
            self._running = True
            return

    def _pg_ctl_start(self, port: int) -> None:
        root = self._require_root()
        log = root / "postgres.log"
        log.unlink(missing_ok=True)
        result = self._run_as_server_user(
            [
                str(self._tool("pg_ctl")),
                "-D",
                str(root / "data"),
                "-l",
                str(log),
                "-o",
                f"-p {port}",
                "-w",
                "-t",
                "60",
                "start",
            ],
            what="pg_ctl start",
            check=False,
        )
        if result.returncode == 0:
            return
        tail = _log_tail(log)
        # pg_ctl may have left a half-started postmaster behind; take it down first.
        self._stop_server(root)
        if "could not bind" in tail or "already in use" in tail:
            raise PortInUse(f"port {port} on {HOST} is already in use: {tail}")
        raise PostgresProblem(
            f"PostgreSQL failed to start (pg_ctl exit {result.returncode}): "
            f"{tail or _one_line(result.stderr)}"
        )

    def _stop_server(self, root: Path) -> None:
        pid_file = root / "data" / "postmaster.pid"
        pid = _postmaster_pid(pid_file)
        pg_ctl = str(self._tool("pg_ctl"))
        for mode in ("fast", "immediate"):
            result = self._run_as_server_user(
                [pg_ctl, "-D", str(root / "data"), "-m", mode, "-w", "-t", "20", "stop"],
                what="pg_ctl stop",
                check=False,
            )
            if result.returncode == 0 or not pid_file.exists():
                break
        else:
            if pid is not None:
                _signal(pid, signal.SIGKILL)
        # pg_ctl returns once the pid file is gone, a moment before the process is.
        if pid is not None:
            _wait_gone(pid)

    def _run_as_server_user(
        self, argv: Sequence[str], what: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # The server refuses to run as root; run it as the OS user of the package.
        account = _server_account()
        if self._netns is not None:
            # nsenter (as root) enters the namespace, then becomes the server user.
            ids = ["-S", str(account[0]), "-G", str(account[1])] if account else []
            argv = ["nsenter", f"--net={self._netns}", *ids, *argv]
            account = None
        result = subprocess.run(
            list(argv),
            cwd=tempfile.gettempdir(),
            capture_output=True,
            text=True,
            env=_child_env(),
            check=False,
            user=account[0] if account else None,
            group=account[1] if account else None,
            extra_groups=[] if account else None,
        )
        if check and result.returncode != 0:
            raise PostgresProblem(f"{what} failed: {_one_line(result.stderr or result.stdout)}")
        return result

    def _wrap(self, argv: list[str]) -> list[str]:
        if self._netns is None:
            return argv
        return ["nsenter", f"--net={self._netns}", *argv]

    def _give_to_server_user(self, path: Path) -> None:
        account = _server_account()
        if account:
            os.chown(path, *account)

    def _tool(self, name: str) -> Path:
        bin_dir = self._bin_dir or find_bin_dir()
        tool = bin_dir / name
        if not tool.is_file():
            raise PostgresProblem(f"{tool} not found; {_INSTALL_HINT}")
        return tool

    def _require_root(self) -> Path:
        if self._root is None:
            raise PostgresProblem("the PostgreSQL server is not started")
        return self._root


def _server_account() -> tuple[int, int] | None:
    """(uid, gid) of the `postgres` OS user when we are root; None: run as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        account = pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PostgresProblem(
            f"running as root but there is no '{SUPERUSER}' OS user to run the server as; "
            f"{_INSTALL_HINT}"
        ) from None
    return account.pw_uid, account.pw_gid


def _postmaster_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _running(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _running(pid):
        if time.monotonic() > deadline:
            _signal(pid, signal.SIGKILL)
            return
        time.sleep(0.02)


def _checked_name(name: str) -> str:
    if not _DB_NAME.match(name):
        raise ValueError(f"not a plain database name: {name!r}")
    return name


def _log_tail(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    return " | ".join(line for line in lines[-_LOG_TAIL_LINES:] if line)


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def main() -> int:
    """`python -m prewarm.devenv.postgres`: a server until Ctrl-C; prints its admin DSN."""
    try:
        with PostgresServer() as pg:
            print(pg.admin_dsn, flush=True)
            while True:
                time.sleep(3600)
    except PostgresProblem as problem:
        print(f"prewarm: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
