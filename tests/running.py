"""The service as an operator runs it: `sharedcare serve` in a subprocess on a free local port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

SHAREDCARE = str(Path(sys.executable).parent / "sharedcare")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(home: Path, env: dict[str, str], *, workers: int = 2, port: int | None = None) -> Iterator[str]:
    """Start `sharedcare serve` with `env` (SHAREDCARE_* settings; nothing else of ours is inherited), wait until
    /readyz answers, yield its address; stop it after."""
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    address = f"http://127.0.0.1:{port}"
    full = {k: v for k, v in os.environ.items() if not k.startswith("SHAREDCARE_") and k != "PYTHONDONTWRITEBYTECODE"}
    full.update(PYTHONPYCACHEPREFIX=str(home / "pycache"))
    full.update(env)
    log_path = home / f"server-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([SHAREDCARE, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers",
                             str(workers)], env=full, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, address, log_path)
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def wait_ready(proc: subprocess.Popen, address: str, log_path: Path, seconds: float = 120) -> None:  # type: ignore[type-arg]
    """Until the server at `address` answers /readyz; the test fails (with the log's tail) if it exits or never does."""
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the server exited: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{address}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the server did not start: {log_path.read_text()[-3000:]}")
        time.sleep(0.3)
