"""The server's token-signing keys: from a keys directory every process shares, rotatable without downtime.

Where they come from: `SHAREDCARE_KEYS_DIR` (default `<var>/keys`), a directory every API process and host
mounts (a shared volume, or a secret mounted read-only where `sharedcare keys rotate` runs elsewhere). The first key
is made only in demo mode (SHAREDCARE_DEMO=1) or by `sharedcare keys generate`; outside demo mode a server
without one refuses to start, naming the directory, so two hosts never silently sign with different keys.

Layout of `settings.keys_dir` (directory mode 0700, files 0600):
- `keys.json`: the manifest, `{"keys": [{"kid", "alg", "created", "retired"}]}`, newest last; the current
  signing key is the newest one not retired.
- `<kid>.pem`: each private key (PKCS#8 PEM).
- `.lock`: taken exclusively (flock) while generating or rotating, so several workers starting at once
  end up with one key.

Rotation (`sharedcare keys rotate`): a new key becomes the current one (new tokens are signed with it), the
previous one is retired then but stays in the published JWKS, and is accepted for verification, for the longest
lifetime a token it signed can have (the retention: access-token lifetime plus clock skew plus a minute); after
that it is dropped from the JWKS and its tokens are refused. Each process re-reads the manifest when its modification time changes, so `sharedcare keys
rotate` takes effect in running workers without a restart. Several hosts need the same keys directory
(a shared volume or a mounted secret).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.jwk import KeySet, RSAKey

# RS256: what SMART requires for id_tokens, and the cheapest signature to verify on every request.
ALG = "RS256"
RSA_BITS = 2048


@dataclass(frozen=True)
class KeyInfo:
    kid: str
    alg: str
    created: int
    retired: int | None


class KeyStore:
    def __init__(self, keys_dir: Path, retention_seconds: int, clock: Any = time.time) -> None:
        self.dir = Path(keys_dir)
        self.retention = retention_seconds
        self.clock = clock  # (seconds since the epoch; the tests move it forward to see a key retire)
        self.may_create = True
        self._mtime: int | None = None
        self._infos: list[KeyInfo] = []
        self._keys: dict[str, RSAKey] = {}
        self._lock = threading.Lock()

    # -- files -------------------------------------------------------------------------------------------
    @property
    def manifest(self) -> Path:
        return self.dir / "keys.json"

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _write_private(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def _write_manifest(self, infos: list[KeyInfo]) -> None:
        tmp = self.dir / f".keys.json.{os.getpid()}.{secrets.token_hex(4)}"
        body = json.dumps({"keys": [i.__dict__ for i in infos]}, indent=2).encode()
        self._write_private(tmp, body)
        os.replace(tmp, self.manifest)

    def _read_manifest(self) -> list[KeyInfo]:
        if not self.manifest.exists():
            return []
        data = json.loads(self.manifest.read_text())
        return [KeyInfo(**k) for k in data.get("keys", [])]

    def _new_key(self) -> KeyInfo:
        key = RSAKey.generate_key(RSA_BITS, private=True)
        kid = time.strftime("%Y%m%d", time.gmtime()) + "-" + secrets.token_hex(6)
        pem = key.as_pem(private=True)
        self._write_private(self.dir / f"{kid}.pem", pem)
        return KeyInfo(kid=kid, alg=ALG, created=int(self.clock()), retired=None)

    # -- life cycle ---------------------------------------------------------------------------------------
    def ensure(self, create: bool = True) -> bool:
        """Create the first key if there is none (safe when many processes start at once); with create=False
        (outside demo mode) a missing key is an error naming the directory. True if a key was made."""
        self.may_create = create
        if self._read_manifest():
            return False
        if not create:
            raise SystemExit(f"configuration error: no token-signing key in {self.dir} (SHAREDCARE_KEYS_DIR); "
                             "run `sharedcare keys generate` once and give every server the same directory")
        with self._exclusive():
            if not self._read_manifest():
                self._write_manifest([self._new_key()])
                return True
        return False

    def rotate(self) -> str:
        """Make a new current key; the previous ones are retired now and published until their tokens expire."""
        with self._exclusive():
            now = int(self.clock())
            infos = [KeyInfo(i.kid, i.alg, i.created, i.retired or now) for i in self._read_manifest()]
            keep = [i for i in infos if not self._expired(i, now)]
            for gone in infos:
                if gone not in keep:
                    (self.dir / f"{gone.kid}.pem").unlink(missing_ok=True)
            new = self._new_key()
            self._write_manifest(keep + [new])
        self._mtime = None
        return new.kid

    def _expired(self, info: KeyInfo, now: int) -> bool:
        return info.retired is not None and info.retired + self.retention < now

    def _refresh(self) -> None:
        try:
            mtime = self.manifest.stat().st_mtime_ns
        except FileNotFoundError:
            self.ensure(create=self.may_create)
            mtime = self.manifest.stat().st_mtime_ns
        if mtime == self._mtime:
            return
        with self._lock:
            infos = self._read_manifest()
            keys: dict[str, RSAKey] = {}
            for info in infos:
                pem = (self.dir / f"{info.kid}.pem").read_bytes()
                keys[info.kid] = RSAKey.import_key(pem, {"kid": info.kid, "alg": info.alg, "use": "sig"})
            self._infos, self._keys, self._mtime = infos, keys, mtime

    def infos(self) -> list[KeyInfo]:
        self._refresh()
        return list(self._infos)

    def current(self) -> tuple[str, RSAKey]:
        self._refresh()
        live = [i for i in self._infos if i.retired is None]
        if not live:
            raise RuntimeError(f"no current signing key in {self.dir}; run `sharedcare keys rotate`")
        info = live[-1]
        return info.kid, self._keys[info.kid]

    def verification_keys(self) -> KeySet:
        """Every key whose tokens may still be valid (the current one and recently retired ones)."""
        self._refresh()
        now = int(self.clock())
        return KeySet([self._keys[i.kid] for i in self._infos if not self._expired(i, now)])

    def valid_kids(self) -> frozenset[str]:
        """The ids of the keys whose tokens may still be accepted (a cached verification is kept only while its
        key is one of them)."""
        self._refresh()
        now = int(self.clock())
        return frozenset(i.kid for i in self._infos if not self._expired(i, now))

    def public_jwks(self) -> dict[str, Any]:
        keys = []
        for key in self.verification_keys().keys:
            jwk = key.as_dict(private=False)
            jwk.update({"kid": key.kid, "alg": ALG, "use": "sig"})
            keys.append(jwk)
        return {"keys": keys}


def retention_for(settings: Any) -> int:
    """How long a retired key stays published and accepted: the longest a token it signed can live."""
    return int(settings.access_token_ttl + settings.clock_skew + 60)
