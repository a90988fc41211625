"""The server secret: 32 random bytes shared by every worker (HMAC keys for paging links and the like).

`SHAREDCARE_SECRET` (any string; its UTF-8 bytes are used) wins; otherwise `<keys_dir>/server-secret`,
created with 32 random bytes (mode 0600) on first use. Creation is race-free across workers: the
file is written to a temporary name and linked into place, and a worker that loses the race reads
the winner's file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from service.config import Settings, get_settings

_cache: dict[Path, bytes] = {}


def server_secret(settings: Settings | None = None) -> bytes:
    env = os.environ.get("SHAREDCARE_SECRET")
    if env:
        return env.encode()
    settings = settings or get_settings()
    path = Path(settings.keys_dir) / "server-secret"
    if path in _cache:
        return _cache[path]
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".server-secret.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    data = path.read_bytes()
    if len(data) < 16:
        raise RuntimeError(f"{path} is too short to be a server secret (delete it to regenerate)")
    _cache[path] = data
    return data
