"""The pages as a SMART app of this service: a public client (`sharedcare-web`) using the authorization code
flow with PKCE against our own /auth endpoints, exchanging, refreshing and revoking its tokens through the same
endpoint code the HTTP routes run (service.auth.routes.AuthRoutes), so sign-ins and token requests are audited
exactly as any other app's.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy.exc import IntegrityError

from service.auth.identities import Client, get_user, upsert_client
from service.auth.oauth import PlainRequest
from service.auth.routes import AuthRoutes
from service.web.session import Session, new_csrf, now

CLIENT_ID = "sharedcare-web"
CLIENT_NAME = "Shared care record (web pages)"
# What the pages ask for; the server grants what the person may have (a patient: her own record, a carer: what
# was shared with him, staff: the records they care for, the IG lead: read-only oversight).
SCOPE = ("patient/*.cruds patient/Consent.cru patient/Goal.cru patient/QuestionnaireResponse.cru user/*.cruds openid "
         "fhirUser online_access")


class SignInError(Exception):
    """A sign-in that could not be completed; the message is in plain words."""


class SmartClient:
    def __init__(self, services: Any) -> None:
        self.services = services
        self.settings = services.settings
        self.routes = AuthRoutes(services, services.auth.server)
        self.redirect_uri = f"{self.settings.base_url}/web/callback"
        self._registered = False
        self._lock = threading.Lock()

    def ensure_registered(self) -> None:
        """Register (or refresh) the pages' own client once per process: idempotent."""
        if self._registered:
            return
        with self._lock:
            if self._registered:
                return
            client = Client(client_id=CLIENT_ID, name=CLIENT_NAME, auth_method="none",
                            grant_types=("authorization_code", "refresh_token"), redirect_uris=(self.redirect_uri,),
                            scope=f"{SCOPE} launch/patient")
            for attempt in (1, 2):  # (another process may register it at the same moment: then it exists)
                try:
                    with self.services.db.write() as conn:
                        upsert_client(conn, client)
                    break
                except IntegrityError:
                    if attempt == 2:
                        raise
            self._registered = True

    def authorize_url(self, state: str, challenge: str) -> str:
        query = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": self.redirect_uri, "scope": SCOPE,
                 "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
                 "aud": self.settings.fhir_base}
        return f"/auth/authorize?{urlencode(query)}"

    def _token_call(self, form: list[tuple[str, str]], remote: str, agent: str | None) -> tuple[int, dict[str, Any]]:
        plain = PlainRequest("POST", f"{self.settings.base_url}/auth/token",
                             {"content-type": "application/x-www-form-urlencoded", "user-agent": agent or ""},
                             [], form, remote)
        resp = self.routes.token(plain)
        try:
            body = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            body = {}
        return resp.status_code, body if isinstance(body, dict) else {}

    def exchange(self, code: str, verifier: str, remote: str, agent: str | None) -> Session:
        status, body = self._token_call([("grant_type", "authorization_code"), ("code", code),
                                         ("redirect_uri", self.redirect_uri), ("client_id", CLIENT_ID),
                                         ("code_verifier", verifier)], remote, agent)
        if status != 200 or "access_token" not in body:
            raise SignInError("Signing in did not finish (the sign-in link may have expired). Please sign in again.")
        return self._session(body)

    def refresh(self, s: Session, remote: str, agent: str | None) -> Session | None:
        if not s.refresh_token:
            return None
        status, body = self._token_call([("grant_type", "refresh_token"), ("refresh_token", s.refresh_token),
                                         ("client_id", CLIENT_ID)], remote, agent)
        if status != 200 or "access_token" not in body:
            return None
        s.access_token = body["access_token"]
        s.expires_at = now() + int(body.get("expires_in", 300))
        s.refresh_token = body.get("refresh_token") or s.refresh_token
        return s

    def revoke(self, s: Session, remote: str) -> None:
        for token, hint in ((s.refresh_token, "refresh_token"), (s.access_token, "access_token")):
            if token:
                plain = PlainRequest("POST", f"{self.settings.base_url}/auth/revoke",
                                     {"content-type": "application/x-www-form-urlencoded"}, [],
                                     [("token", token), ("token_type_hint", hint), ("client_id", CLIENT_ID)], remote)
                self.routes.endpoint("revocation", plain)

    def _session(self, body: dict[str, Any]) -> Session:
        claims = self.services.auth.tokens.verify(body["access_token"]).claims
        subject = str(claims["sub"])
        with self.services.db.read() as conn:
            user = get_user(conn, subject)
        if user is None:
            raise SignInError("Your account could not be found. Please contact your administrator.")
        return Session(access_token=body["access_token"], expires_at=now() + int(body.get("expires_in", 300)),
                       refresh_token=body.get("refresh_token"), csrf=new_csrf(), subject=subject, kind=user.kind,
                       name=user.display_name or subject, fhir_user=user.fhir_user,
                       patient=body.get("patient") or user.patient, organisation=user.organisation, started=now())
