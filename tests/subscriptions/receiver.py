"""A local HTTP receiver for notifications: a tiny threaded http.server on a free loopback port."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Records every request; answers with `statuses` in turn (then 200)."""

    def __init__(self, statuses: tuple[int, ...] = (), port: int = 0) -> None:
        self.requests: list[Received] = []
        self.statuses = list(statuses)
        self._cond = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with owner._cond:
                    status = owner.statuses.pop(0) if owner.statuses else 200
                    owner.requests.append(Received(self.command, self.path,
                                                   {k.lower(): v for k, v in self.headers.items()}, body))
                    owner._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, n: int, timeout: float = 15.0) -> list[Received]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.requests) >= n, timeout)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
