"""Run wrk (https://github.com/wg/wrk, Debian package `wrk`) and read its figures.

Each run gets a Lua script that sets the method, headers and body, and whose `done` hook prints one
JSON line with the summary (requests, duration, p50/p99, errors), so nothing depends on the layout of
wrk's text report. `errors.status` is wrk's "Non-2xx or 3xx responses" (status >= 400); connect, read,
write and timeout are its "Socket errors".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

MARK = "WRK_JSON "
DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "non_2xx": %d, '
    .. '"connect": %d, "read": %d, "write": %d, "timeout": %d}\\n', '__MARK__',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
""".replace("__MARK__", MARK)


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int  # connect + read + write + timeout
    timeouts: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def ensure_wrk() -> str:
    """The path of wrk; installs the Debian package when running as root, else fails saying how."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("wrk is not installed and this is not root: install it with "
                           "`sudo apt-get install -y wrk` (Debian/Ubuntu), then run the benchmark again")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=False)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("could not install wrk with `apt-get install -y wrk`; install it by hand")
    return found


def script(headers: dict[str, str], method: str = "GET", body: bytes | None = None) -> str:
    """A wrk Lua script for one request shape (long-bracket strings: no escaping needed)."""
    lines = [f'wrk.method = "{method}"']
    lines += [f'wrk.headers["{k}"] = [==[{v}]==]' for k, v in headers.items()]
    if body is not None:
        lines.append(f"wrk.body = [==[{body.decode()}]==]")
    return "\n".join(lines) + "\n" + DONE


def run(url: str, lua: Path, seconds: int, *, threads: int = 2, connections: int = 32,
        timeout_s: int = 10) -> Result:
    """One wrk run; raises with wrk's output when it fails or prints no summary."""
    cmd = [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s",
           "--latency", "-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout_s + 60, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith(MARK)]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    s = json.loads(lines[-1][len(MARK):])
    secs = s["duration_us"] / 1e6
    return Result(requests=s["requests"], seconds=secs, rps=s["requests"] / secs if secs else 0.0,
                  p50_ms=s["p50_us"] / 1000, p99_ms=s["p99_us"] / 1000, non_2xx=s["non_2xx"],
                  socket_errors=s["connect"] + s["read"] + s["write"] + s["timeout"], timeouts=s["timeout"])
