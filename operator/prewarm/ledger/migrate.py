"""Apply the ledger's ordered SQL migrations, once each, recorded with checksums.

Each file `NNNN_<name>.sql` runs in its own transaction together with the row
that records it in `schema_migrations`, so a crash leaves either both or
neither. A session-level advisory lock serialises concurrent migrators (several
replicas starting at once, or `prewarm migrate` during a rollout). The content
checksum turns an edited, already-applied file into a loud error instead of a
silent drift between databases.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from prewarm.ledger import queries

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The migrations on disk and those recorded in the database disagree."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    path: Path
    sql: bytes

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql).hexdigest()


def migrations_dir() -> Path:
    """Where the SQL files are: inside an installed wheel, else the source tree's migrations/."""
    packaged = Path(str(resources.files("prewarm"))) / "_data" / "migrations"
    if packaged.is_dir():
        return packaged
    source_tree = Path(__file__).resolve().parents[3] / "migrations"
    if source_tree.is_dir():
        return source_tree
    raise MigrationError(f"no migrations directory at {packaged} or {source_tree}")


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migrations in `directory`, ordered by version; rejects misnamed or duplicate files."""
    directory = directory or migrations_dir()
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_<name>.sql")
        version = match["version"]
        if version in found:
            raise MigrationError(
                f"{path.name}: version {version} is also used by {found[version].filename}"
            )
        found[version] = Migration(version, match["name"], path, path.read_bytes())
    return [found[v] for v in sorted(found)]


def migrate(
    dsn: str, directory: Path | None = None, connect_timeout_s: float | None = None
) -> list[str]:
    """Apply every pending migration; returns the file names applied (empty: up to date).

    Raises MigrationError, before applying anything, when an applied file was
    changed; psycopg.OperationalError when PostgreSQL cannot be reached (within
    `connect_timeout_s`, if given).
    """
    migrations = load_migrations(directory)
    applied_now: list[str] = []
    # libpq counts whole seconds (and less than 2 as 2); None means no timeout.
    timeout = None if connect_timeout_s is None else int(connect_timeout_s)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=timeout) as conn:
        conn.execute(queries.MIGRATION_LOCK, {"key": queries.MIGRATION_LOCK_KEY})
        try:
            conn.execute(queries.CREATE_SCHEMA_MIGRATIONS)
            recorded: dict[str, str] = dict(conn.execute(queries.APPLIED_MIGRATIONS).fetchall())
            _check_unchanged(migrations, recorded)
            for migration in migrations:
                if migration.version in recorded:
                    continue
                with conn.transaction():
                    # bytes: a file may hold several statements, which only the
                    # simple query protocol (no parameters) accepts.
                    conn.execute(migration.sql)
                    conn.execute(
                        queries.RECORD_MIGRATION,
                        {
                            "version": migration.version,
                            "filename": migration.filename,
                            "checksum": migration.checksum,
                        },
                    )
                applied_now.append(migration.filename)
        finally:
            conn.execute(queries.MIGRATION_UNLOCK, {"key": queries.MIGRATION_LOCK_KEY})
    return applied_now


async def migrate_async(
    dsn: str, directory: Path | None = None, connect_timeout_s: float | None = None
) -> list[str]:
    """migrate() for the operator's event loop: the blocking work runs in a thread."""
    return await asyncio.to_thread(migrate, dsn, directory, connect_timeout_s)


def _check_unchanged(migrations: list[Migration], recorded: dict[str, str]) -> None:
    for migration in migrations:
        checksum = recorded.get(migration.version)
        if checksum is not None and checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.filename} was changed after it was applied "
                f"(recorded sha256 {checksum[:12]}…, file {migration.checksum[:12]}…); "
                "add a new migration instead of editing an applied one"
            )
