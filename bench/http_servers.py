"""Processes for the HTTP benchmark: the CLI, servers in their own process group (always stopped), free
ports, the stored bytes the reference apps serve."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(cmd: list[str], env: dict[str, str]) -> str:
    """Run a command to completion; its stdout, or an error with its output."""
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({out.returncode}): "
                           f"{out.stderr[-2000:]}{out.stdout[-500:]}")
    return out.stdout


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (uvicorn's workers too), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def serving(cmd: list[str], env: dict[str, str], ready_url: str, log: Path,
            timeout: float = 120) -> Iterator[None]:
    """Start a server in its own process group, wait until `ready_url` answers 200, stop it afterwards
    (also on failure)."""
    with log.open("ab") as sink:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited with {proc.returncode} before answering: {_tail(log)}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ready_url} did not answer 200 within {timeout:.0f}s: {_tail(log)}")
            time.sleep(0.2)
        yield
    finally:
        _stop(proc)


def log_errors(log: Path) -> int:
    """Lines of a server log that report an error (the service logs JSON lines; uvicorn plain text)."""
    if not log.exists():
        return 0
    marks = ('"level":"error"', '"level":"critical"', "Traceback", "ERROR:")
    return sum(1 for line in log.read_text(errors="replace").splitlines() if any(m in line for m in marks))


def stored_content(url: str) -> bytes:
    """The stored JSON of Patient/pat-pat: what the reference apps return."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            content = conn.execute(text("SELECT content FROM resource WHERE res_type = 'Patient' "
                                        "AND res_id = 'pat-pat'")).scalar_one()
    finally:
        engine.dispose()
    return str(content).encode()
