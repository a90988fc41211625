"""A slow client (a byte a second) ties up nothing but its own connection: other requests to the same single
worker are answered at once, and the server closes the slow connection with a 408 OperationOutcome when its
request line and headers have not arrived within HEADER_SECONDS (service/api/http_protocol.py); a connection
that sends nothing is closed the same way."""

from __future__ import annotations

import socket
import threading
import time

import httpx

from service.api.http_protocol import HEADER_SECONDS
from tests.faults.support import environment, headers_for, prepare, serving
from tests.running import free_port


def _dribble(port: int, payload: bytes, out: dict[str, object]) -> None:
    """Send `payload` a byte a second; record what the server answered and when it closed the connection."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(1.0)
    opened = time.monotonic()
    got = b""
    try:
        for byte in payload:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            try:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            except TimeoutError:
                continue
            except OSError:  # (the server closed it: reset while this side still had bytes to send)
                break
        while time.monotonic() - opened < HEADER_SECONDS + 15:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            got += chunk
    finally:
        out["closed_after"] = time.monotonic() - opened
        out["answer"] = got
        s.close()


def test_a_byte_a_second_holds_only_its_own_connection_and_is_cut_off(tmp_path):
    port = free_port()
    env = environment(f"sqlite:///{tmp_path / 'var' / 'sc.db'}", tmp_path, port)
    prepare(env)
    h = headers_for(env, "nurse.nina")["nurse.nina"]
    slow: dict[str, object] = {}
    idle: dict[str, object] = {}
    request = b"GET /fhir/Patient/pat-pat HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Filler: " + b"a" * 60 + b"\r\n\r\n"
    with serving(env, port, workers=1) as server, httpx.Client(base_url=server.base, timeout=30) as c:
        threads = [threading.Thread(target=_dribble, args=(port, request, slow)),
                   threading.Thread(target=_dribble, args=(port, b"", idle))]
        for t in threads:
            t.start()
        time.sleep(2)
        took = []
        for _ in range(20):  # meanwhile the same worker answers everyone else at once
            t0 = time.perf_counter()
            r = c.get("/fhir/Patient/pat-pat", headers=h)
            took.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
        for t in threads:
            t.join(HEADER_SECONDS + 30)
    assert max(took) < 2.0, took
    answer = bytes(slow["answer"])  # type: ignore[arg-type]
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"resourceType":"OperationOutcome"' in answer and b"did not arrive within" in answer
    assert float(slow["closed_after"]) < HEADER_SECONDS + 3  # type: ignore[arg-type]
    assert bytes(idle["answer"]).startswith(b"HTTP/1.1 408")  # type: ignore[arg-type]
    assert float(idle["closed_after"]) < HEADER_SECONDS + 3  # type: ignore[arg-type]
