"""The server secret: bytes shared by every process and host (HMAC keys for paging links, web sessions and the like).

Where it comes from, first found wins:
- `SHAREDCARE_SECRET`: the secret itself (any string of at least 16 characters; its UTF-8 bytes are used);
- `SHAREDCARE_SECRET_FILE`: a file holding it (a mounted secret);
- `<keys_dir>/server-secret` (SHAREDCARE_KEYS_DIR, shared like the signing keys).
The file under the keys directory is created (32 random bytes, mode 0600) only in demo mode or by
`sharedcare keys generate`; outside demo mode a missing secret is a configuration error naming the variables, so
two hosts never sign paging links with different secrets. Creation is race-free across workers: the file is
written to a temporary name and linked into place, and a worker that loses the race reads the winner's file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from service.config import SECRET_MIN, Settings, get_settings

_cache: dict[Path, bytes] = {}
MIN_BYTES = SECRET_MIN


def server_secret(settings: Settings | None = None, *, create: bool | None = None) -> bytes:
    """The secret; `create` (default: in demo mode) makes the keys directory's file when nothing is configured."""
    settings = settings or get_settings()
    if settings.secret is not None:  # (its length is checked with the rest of the configuration)
        return settings.secret.get_secret_value().encode()
    named = settings.secret_file
    path = Path(named) if named else Path(settings.keys_dir) / "server-secret"
    if path in _cache:
        return _cache[path]
    if not path.exists():
        if named:
            raise SystemExit(f"configuration error: SHAREDCARE_SECRET_FILE names {path}, which does not exist")
        if not (settings.demo if create is None else create):
            raise SystemExit(f"configuration error: no server secret: set SHAREDCARE_SECRET or SHAREDCARE_SECRET_FILE, "
                             f"or run `sharedcare keys generate` to create {path} (shared by every server)")
        _create(path)
    data = path.read_bytes().strip() if named else path.read_bytes()
    if len(data) < MIN_BYTES:
        raise SystemExit(f"configuration error: {path} is too short to be a server secret (at least {MIN_BYTES} "
                         "bytes)")
    _cache[path] = data
    return data


def _create(path: Path) -> None:
    create_file(path, secrets.token_bytes(32))


def create_file(path: Path, content: bytes) -> None:
    """Write a new secret file (mode 0600) whole or not at all: written under another name, then linked into
    place, so that processes starting at once never see half a file, and the first one's stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
