"""The migration runner against a real, empty database."""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from prewarm.ledger.migrate import MigrationError, load_migrations, migrate, migrations_dir

REPO = Path(__file__).resolve().parents[2]
SOURCE_FILES = sorted(p.name for p in (REPO / "migrations").glob("*.sql"))


def _recorded(dsn: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT version, filename, checksum FROM schema_migrations ORDER BY version"
        ).fetchall()
    return [(str(v), str(f), str(c)) for v, f, c in rows]


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {str(name) for (name,) in rows.fetchall()}


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    shutil.copytree(REPO / "migrations", directory)
    return directory


def test_the_source_tree_has_ordered_migrations():
    assert migrations_dir() == REPO / "migrations"
    assert SOURCE_FILES[0].startswith("0001_")
    assert [m.filename for m in load_migrations()] == SOURCE_FILES


def test_installed_wheel_location_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    packaged = tmp_path / "prewarm" / "_data" / "migrations"
    packaged.mkdir(parents=True)
    monkeypatch.setattr("importlib.resources.files", lambda _: tmp_path / "prewarm")
    assert migrations_dir() == packaged


def test_migrate_from_empty_applies_everything_with_checksums(pg_dsn: str):
    applied = migrate(pg_dsn)

    assert applied == SOURCE_FILES
    assert {"presets", "builds", "claims", "hard_limit_notifications"} <= _tables(pg_dsn)
    expected = [
        (name[:4], name, hashlib.sha256((REPO / "migrations" / name).read_bytes()).hexdigest())
        for name in SOURCE_FILES
    ]
    assert _recorded(pg_dsn) == expected


def test_migrate_twice_is_a_no_op(pg_dsn: str):
    migrate(pg_dsn)
    with psycopg.connect(pg_dsn) as conn:
        before = conn.execute("SELECT * FROM schema_migrations ORDER BY version").fetchall()

    assert migrate(pg_dsn) == []

    with psycopg.connect(pg_dsn) as conn:
        after = conn.execute("SELECT * FROM schema_migrations ORDER BY version").fetchall()
    assert after == before


def test_only_new_files_are_applied(pg_dsn: str, migrations_copy: Path):
    migrate(pg_dsn, migrations_copy)
    (migrations_copy / "0900_extra.sql").write_text("CREATE TABLE extra (id int);\n")

    assert migrate(pg_dsn, migrations_copy) == ["0900_extra.sql"]
    assert "extra" in _tables(pg_dsn)


def test_a_changed_applied_migration_is_an_error_naming_the_file(
    pg_dsn: str, migrations_copy: Path
):
    migrate(pg_dsn, migrations_copy)
    edited = migrations_copy / "0002_presets.sql"
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")
    (migrations_copy / "0900_extra.sql").write_text("CREATE TABLE extra (id int);\n")

    with pytest.raises(MigrationError, match=r"0002_presets\.sql was changed"):
        migrate(pg_dsn, migrations_copy)
    # Nothing else ran: a mismatch stops the whole run before any change.
    assert "extra" not in _tables(pg_dsn)


def test_a_failing_migration_leaves_no_trace(pg_dsn: str, migrations_copy: Path):
    (migrations_copy / "0900_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT 1 / 0;\n"
    )
    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate(pg_dsn, migrations_copy)

    assert "half_done" not in _tables(pg_dsn)
    assert [name for _, name, _ in _recorded(pg_dsn)] == SOURCE_FILES


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["0001_a.sql", "0001_b.sql"], "version 0001 is also used by 0001_a.sql"),
        (["1_a.sql"], "must be named NNNN_<name>.sql"),
        (["0001-a.sql"], "must be named NNNN_<name>.sql"),
    ],
)
def test_misnamed_files_are_rejected(tmp_path: Path, files: list[str], message: str):
    for name in files:
        (tmp_path / name).write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=message):
        load_migrations(tmp_path)


def test_concurrent_migrators_do_not_collide(pg_dsn: str, migrations_copy: Path):
    # A slow last step keeps the first migrator inside its work while the others
    # arrive, so without the advisory lock they would all try CREATE TYPE etc.
    (migrations_copy / "0900_slow.sql").write_text("SELECT pg_sleep(0.3);\n")
    migrators = 4
    start = threading.Barrier(migrators)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            results.append(migrate(pg_dsn, migrations_copy))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(migrators)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    every_file = [*SOURCE_FILES, "0900_slow.sql"]
    assert sorted(name for applied in results for name in applied) == every_file
    assert sum(1 for applied in results if applied) == 1
    assert [name for _, name, _ in _recorded(pg_dsn)] == every_file
