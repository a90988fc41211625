"""`sharedcare backup PATH` and `sharedcare restore PATH`: the whole database, online.

PostgreSQL: `pg_dump --format=custom` (a consistent snapshot while the service runs) and `pg_restore` into an empty
database (`--exit-on-error --single-transaction`: all or nothing), with the client tools on PATH (Debian package
postgresql-client, the server's major version or newer). SQLite: the online backup API (pages copied while the
service keeps writing; the copy is one consistent moment), and the same API back into a new file.

What is not in the database and must be kept with the backup: the keys directory (signing keys, server secret, the
audit seal key unless SHAREDCARE_AUDIT_KEY holds it) and the audit anchor file; `sharedcare audit verify` after a
restore checks the restored log against them (an anchor newer than the backup shows the seals made since as
missing, as it should).

Exit codes: 0 done; 1 the target is not empty (restore) or the tool failed; 2 bad PATH; 4 database or tool
unavailable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("backup", help="back the database up to PATH, online (pg_dump, or SQLite's backup API)")
    b.add_argument("path", type=Path, help="the backup file to write (must not exist)")
    b.set_defaults(func=backup)
    r = sub.add_parser("restore", help="restore a backup into the configured database, which must be empty")
    r.add_argument("path", type=Path, help="a file written by sharedcare backup")
    r.set_defaults(func=restore)


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection string for pg_dump/pg_restore, the password passed in the environment (not argv)."""
    from sqlalchemy.engine import URL, make_url

    u = make_url(url)
    env = {"PGPASSWORD": u.password} if u.password else {}
    bare = URL.create("postgresql", u.username, None, u.host, u.port, u.database, u.query)
    return bare.render_as_string(hide_password=False), env


def _sqlite_path(url: str) -> Path:
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:":
        raise SystemExit("configuration error: SHAREDCARE_DATABASE_URL names no SQLite file to back up")
    return Path(database)


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found is None:
        print(f"error: {name} is not installed (Debian: apt-get install postgresql-client)", file=sys.stderr)
    return found


def backup(args: argparse.Namespace) -> int:
    from service.config import get_settings

    settings = get_settings()
    path: Path = args.path
    if path.exists():
        print(f"error: {path} exists; a backup never overwrites a file", file=sys.stderr)
        return 2
    if not path.parent.is_dir():
        print(f"error: {path.parent} is not a directory", file=sys.stderr)
        return 2
    started = time.monotonic()
    tmp = path.with_name(f".{path.name}.partial")
    try:
        if settings.is_sqlite:
            _sqlite_copy(_sqlite_path(settings.database_url), tmp)
        else:
            pg_dump = _tool("pg_dump")
            if pg_dump is None:
                return 4
            dsn, extra = _libpq(settings.database_url)
            done = subprocess.run([pg_dump, "--format=custom", "--no-owner", "--file", str(tmp), dsn],
                                  env={**os.environ, **extra}, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"error: pg_dump failed: {done.stderr.strip()[-2000:]}", file=sys.stderr)
                return 4 if "could not connect" in done.stderr or "connection" in done.stderr else 1
        os.chmod(tmp, 0o600)  # (it holds the whole record)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    print(str(path))
    print(f"backup written: {path} ({path.stat().st_size} bytes, {time.monotonic() - started:.1f} s); keep the keys "
          "directory and the audit anchor file with it", file=sys.stderr)
    return 0


def _sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy while others keep writing (in steps, so writers are not held)."""
    if not source.exists():
        raise SystemExit(f"configuration error: the SQLite database {source} does not exist")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=1024, sleep=0.005)
    finally:
        dst.close()
        src.close()


def restore(args: argparse.Namespace) -> int:
    from service.config import get_settings

    settings = get_settings()
    path: Path = args.path
    if not path.is_file():
        print(f"error: {path} is not a backup file", file=sys.stderr)
        return 2
    started = time.monotonic()
    if settings.is_sqlite:
        target = _sqlite_path(settings.database_url)
        if _sqlite_has_tables(target):
            print(f"error: {target} already holds data; restore into a new database file (set "
                  "SHAREDCARE_DATABASE_URL to it), then switch the service over", file=sys.stderr)
            return 1
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(path, target)
    else:
        pg_restore = _tool("pg_restore")
        if pg_restore is None:
            return 4
        if _pg_has_tables(settings.database_url):
            print("error: the database named by SHAREDCARE_DATABASE_URL is not empty; restore into a new database "
                  "(createdb), then switch the service over", file=sys.stderr)
            return 1
        dsn, extra = _libpq(settings.database_url)
        done = subprocess.run([pg_restore, "--no-owner", "--exit-on-error", "--single-transaction", "--dbname", dsn,
                               str(path)], env={**os.environ, **extra}, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"error: pg_restore failed (nothing was restored): {done.stderr.strip()[-2000:]}", file=sys.stderr)
            return 1
    counts = _counts(settings)
    print(f"restored {path} in {time.monotonic() - started:.1f} s: " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + "; now run `sharedcare audit verify`", file=sys.stderr)
    return 0


def _sqlite_has_tables(target: Path) -> bool:
    if not target.exists() or target.stat().st_size == 0:
        return False
    conn = sqlite3.connect(target)
    try:
        return conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] > 0
    finally:
        conn.close()


def _pg_has_tables(url: str) -> bool:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")).scalar())
    finally:
        engine.dispose()


def _counts(settings: Any) -> dict[str, int]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(settings.database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return {name: int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0) for name, table in (
                ("resources", "resource"), ("versions", "resource_version"), ("audit rows", "audit_log"),
                ("seals", "audit_seal"))}
    finally:
        engine.dispose()
