"""The proof with real clients: `sharedcare serve --workers 2` in a subprocess on the test database (SQLite and
PostgreSQL), driven only through third-party FHIR clients (fhirclient, fhirpy, pyfhircheck). Tokens come from the
server's own authorisation server: a SMART standalone launch (a browser's part, the login form, played with
httpx) or, for the partner system, client credentials with a signed assertion (SMART Backend Services)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.auth.conftest import DEMO_PASSWORD, assertion, gp_key
from tests.running import free_port, running_server


@pytest.fixture(scope="module")
def server(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("clients-server")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"SHAREDCARE_DATABASE_URL": settings.database_url, "SHAREDCARE_BASE_URL": base, "SHAREDCARE_DEMO": "1",
           "SHAREDCARE_VAR_DIR": str(home / "var"), "SHAREDCARE_KEYS_DIR": str(home / "keys"),
           "SHAREDCARE_API_RATE_PER_MINUTE": "100000"}
    with running_server(home, env, port=port) as address:
        yield address


@pytest.fixture
def people(clean_services: Any) -> Any:
    """The demo records and identities (users with their demo passwords, gp-system, demo-app)."""
    from service.auth.demo import load_identities
    from service.demo.loader import load_records

    load_records(clean_services)
    load_identities(clean_services)
    return clean_services


def partner_token(server: str, scope: str = "system/*.cruds") -> str:
    """The GP practice's system (gp-system) signs in with SMART Backend Services: a client assertion signed with
    its registered key, for an access token from the server's token endpoint."""
    token_url = f"{server}/auth/token"
    r = httpx.post(token_url, data={
        "grant_type": "client_credentials", "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion("gp-system", gp_key(), "ES384", aud=token_url)}, timeout=30)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def browser_login(authorize_url: str, username: str, password: str = DEMO_PASSWORD, patient: str = "") -> str:
    """What the user does in the browser: open the authorize URL and fill in the login form (and, for a
    professional, pick the patient); returns where the server redirects to."""
    with httpx.Client(timeout=30) as browser:
        page = browser.get(authorize_url)
        assert page.status_code == 200, page.text
        parts = urlsplit(authorize_url)
        form = dict(parse_qsl(parts.query))
        form.update(username=username, password=password, action="login")
        if patient:
            form["patient"] = patient
        r = browser.post(f"{parts.scheme}://{parts.netloc}{parts.path}", data=form)
        assert r.status_code == 302, r.text
        return r.headers["location"]
