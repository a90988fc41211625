"""A daemon thread per process, started on first use: after a fork (uvicorn's workers) the child starts its own."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class ProcessThread:
    def __init__(self, name: str, target: Callable[[], None]) -> None:
        self.name, self.target = name, target
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._pid == os.getpid()

    def ensure(self) -> None:
        if self._running():
            return
        with self._lock:
            if not self._running():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self.target, name=self.name, daemon=True)
                self._thread.start()
