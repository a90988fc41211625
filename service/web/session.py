"""The pages' session: an encrypted, authenticated cookie (Fernet under a key derived from the server secret).

It holds the SMART access token (and its refresh token) the sign-in obtained, who signed in (as the token's
verification found them) and the CSRF token every form carries. Nothing of it is readable or changeable by the
browser; nothing is kept in server memory, so any process of the service can serve the next page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from service.secrets import server_secret

SESSION_COOKIE = "sc_session"
FLOW_COOKIE = "sc_signin"
SESSION_MAX_AGE = 12 * 3600  # the refresh token's grant ends sooner or later; this is the cookie's upper bound
FLOW_MAX_AGE = 600


@dataclass
class Session:
    access_token: str
    expires_at: int
    refresh_token: str | None
    csrf: str
    subject: str
    kind: str  # practitioner | patient | relatedPerson | ig | admin
    name: str
    fhir_user: str | None = None
    patient: str | None = None
    organisation: str | None = None
    started: int = 0

    @property
    def is_person(self) -> bool:
        return self.kind in ("patient", "relatedPerson")


class Sealer:
    """Seals and opens the session and sign-in cookies."""

    def __init__(self, settings: Any) -> None:
        secret = server_secret(settings)
        key = hashlib.sha256(b"sharedcare web session v1\x00" + secret).digest()
        self.fernet = Fernet(base64.urlsafe_b64encode(key))
        self.secure = settings.base_url.startswith("https://")

    def seal(self, data: dict[str, Any]) -> str:
        return self.fernet.encrypt(orjson.dumps(data)).decode()

    def open(self, text: str | None, max_age: int) -> dict[str, Any] | None:
        if not text:
            return None
        try:
            data = orjson.loads(self.fernet.decrypt(text.encode(), ttl=max_age))
        except (InvalidToken, orjson.JSONDecodeError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def session(self, cookie: str | None) -> Session | None:
        data = self.open(cookie, SESSION_MAX_AGE)
        if data is None:
            return None
        try:
            return Session(**data)
        except TypeError:
            return None

    def session_cookie(self, s: Session) -> str:
        return self.seal(asdict(s))

    def cookie_args(self, max_age: int, path: str = "/") -> dict[str, Any]:
        return {"max_age": max_age, "path": path, "httponly": True, "secure": self.secure, "samesite": "lax"}


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf.encode(), (sent or "").encode())


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def now() -> int:
    return int(time.time())
