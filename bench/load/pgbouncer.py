"""Debian's pgbouncer in transaction pooling mode, on a free loopback port in front of a PostgreSQL server, for the
pgbouncer test (tests/ops/test_pgbouncer.py) and benchmark (bench/pooler_bench.py).

Runs in the foreground from a temporary folder; as root it switches to the `postgres` system user (`-u`), which
owns the folder. Trust auth (the one user in its auth file), the admin console for `postgres`. `make pgbouncer`
installs the package.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self


def binary() -> str | None:
    found = shutil.which("pgbouncer")
    return found or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgBouncer:
    """`with PgBouncer(host, port, pool_size=3) as pgb:` pgb.url(database), pgb.admin("SHOW POOLS")."""

    def __init__(self, pg_host: str, pg_port: int, *, pool_size: int = 3, max_client_conn: int = 400) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sc-pgbouncer-"))
        self.port = _free_port()
        self.log = self.root / "pgbouncer.log"
        (self.root / "users.txt").write_text('"postgres" ""\n')
        (self.root / "pgbouncer.ini").write_text(f"""\
[databases]
* = host={pg_host} port={pg_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.root}/users.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = {pool_size}
reserve_pool_size = 0
max_client_conn = {max_client_conn}
server_reset_query = DISCARD ALL
logfile = {self.log}
pidfile = {self.root}/pgbouncer.pid
""")
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            for p in (self.root, *self.root.iterdir()):
                shutil.chown(p, self.user)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = binary()
        if exe is None:
            raise RuntimeError("pgbouncer is not installed (`make pgbouncer`)")
        cmd = [exe, *(["-u", self.user] if self.user else []), str(self.root / "pgbouncer.ini")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.admin("SHOW VERSION")
                return
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"pgbouncer did not start: "
                                       f"{self.log.read_text()[-2000:] if self.log.exists() else ''}") from None
                time.sleep(0.2)

    def admin(self, command: str) -> list[dict[str, str]]:
        """A command on pgbouncer's admin console (simple query protocol: psql), as rows of named columns."""
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "pgbouncer",
                              "-A", "-F", "\t", "-P", "footer=off", "-c", command],
                             capture_output=True, text=True, timeout=10, check=True).stdout.splitlines()
        head = out[0].split("\t") if out else []
        return [dict(zip(head, line.split("\t"), strict=False)) for line in out[1:]]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def stopped(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
