"""Against a running server: `sharedcare serve --workers 2` in a subprocess on a free local port, on the test
database. The `fhirclient` library (SMART on FHIR's Python client) finds the endpoints through the
CapabilityStatement's oauth-uris extension, runs the standalone launch with PKCE (a browser's part, the login
form, is played with httpx), reads the patient, searches, and refreshes its token; it also authorises as a
backend system with a signed client assertion. The login lockout is shown to hold across processes.
On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.auth.conftest import DEMO_PASSWORD, REDIRECT, assertion, authorize_params, gp_key, login, pkce
from tests.running import free_port, running_server


@pytest.fixture(scope="module")
def server(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service as an operator runs it (two worker processes), on the test database. Stateless: the tests
    reload the demo data under it as they please."""
    home = tmp_path_factory.mktemp("server")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"SHAREDCARE_DATABASE_URL": settings.database_url, "SHAREDCARE_BASE_URL": base, "SHAREDCARE_DEMO": "1",
               "SHAREDCARE_VAR_DIR": str(home / "var"), "SHAREDCARE_KEYS_DIR": str(home / "keys")}
    with running_server(home, env, port=port) as address:
        yield address


def _browser_login(authorize_url: str, username: str, password: str = DEMO_PASSWORD, patient: str = "") -> str:
    """What a user does in the browser: open the authorize URL, fill in the login form; returns the redirect."""
    with httpx.Client(timeout=30) as browser:
        page = browser.get(authorize_url)
        assert page.status_code == 200, page.text
        assert 'name="password"' in page.text
        parts = urlsplit(authorize_url)
        form = dict(parse_qsl(parts.query))
        form.update(username=username, password=password, action="login")
        if patient:
            form["patient"] = patient
        r = browser.post(f"{parts.scheme}://{parts.netloc}{parts.path}", data=form)
        assert r.status_code == 302, r.text
        return r.headers["location"]


def test_fhirclient_standalone_launch_reads_the_patient(demo, server, client):
    from fhirclient.client import FHIRClient
    from fhirclient.models.observation import Observation
    from fhirclient.models.patient import Patient

    obs = client.post("/fhir/Observation", json={  # written in-process with the admin token; the server sees it
        "resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/pat-pat"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"}})
    assert obs.status_code == 201
    saved: list[Any] = []
    smart = FHIRClient(settings={"app_id": "demo-app", "api_base": f"{server}/fhir", "redirect_uri": REDIRECT,
                                 "scope": "openid fhirUser offline_access patient/*.rs"}, save_func=saved.append)
    url = smart.authorize_url  # reads /fhir/metadata and its oauth-uris extension
    assert url.startswith(f"{server}/auth/authorize?")
    q = dict(parse_qsl(urlsplit(url).query))
    assert q["code_challenge_method"] == "S256" and q["aud"] == f"{server}/fhir"
    assert "launch/patient" in q["scope"].split()
    redirect = _browser_login(url, "patient.pat")
    assert redirect.startswith(REDIRECT)
    smart.handle_callback(redirect)
    assert smart.ready and smart.patient_id == "pat-pat"
    assert smart.launch_context["scope"] and smart.server.auth.refresh_token
    patient = smart.patient
    assert patient is not None and patient.id == "pat-pat"
    assert smart.human_name(patient.name[0]) == "Pat Example"
    assert patient.identifier[0].value == "9434765919"
    # Search through the library too.
    found = list(Observation.where({"subject": "Patient/pat-pat"}).perform_resources_iter(smart.server))
    assert [o.id for o in found] == [obs.json()["id"]] and found[0].code.text == "Heart rate"
    # Another patient's record is out of reach.
    from fhirclient.server import FHIRNotFoundException, FHIRPermissionDeniedException

    with pytest.raises((FHIRNotFoundException, FHIRPermissionDeniedException)):
        Patient.read("pat-paula", smart.server)
    # Refresh with the rotated refresh token; the new access token works.
    old_access, old_refresh = smart.server.auth.access_token, smart.server.auth.refresh_token
    assert smart.reauthorize()
    assert smart.server.auth.access_token != old_access and smart.server.auth.refresh_token != old_refresh
    assert Patient.read("pat-pat", smart.server).id == "pat-pat"


def test_fhirclient_as_a_professional_picks_the_patient(demo, server):
    from fhirclient import client

    smart = client.FHIRClient(settings={"app_id": "demo-app", "api_base": f"{server}/fhir",
                                        "redirect_uri": REDIRECT, "scope": "openid fhirUser patient/*.rs"},
                              save_func=lambda state: None)
    smart.handle_callback(_browser_login(smart.authorize_url, "nurse.nina", patient="pat-pat"))
    assert smart.patient_id == "pat-pat" and smart.launch_context["need_patient_banner"] is True
    assert smart.patient.id == "pat-pat"


def test_fhirclient_backend_services_with_a_signed_assertion(demo, server):
    from fhirclient import client
    from fhirclient.models.patient import Patient

    signed = assertion("gp-system", gp_key(), "ES384", aud=f"{server}/auth/token")
    smart = client.FHIRClient(settings={"app_id": "gp-system", "api_base": f"{server}/fhir",
                                        "scope": "system/Patient.rs", "jwt_token": signed},
                              save_func=lambda state: None)
    smart.prepare()
    smart.authorize()
    assert smart.ready and smart.launch_context["scope"] == "system/Patient.rs"
    assert Patient.read("pat-pat", smart.server).id == "pat-pat"
    # The same assertion again is a replay: refused, by whichever worker gets it.
    again = httpx.post(f"{server}/auth/token", data={
        "grant_type": "client_credentials", "scope": "system/Patient.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": signed})
    assert again.status_code in (400, 401) and again.json()["error"] == "invalid_client"


def test_the_login_lockout_holds_across_processes(demo, server, anon_client):
    _verifier, challenge = pkce()
    params = authorize_params(challenge, aud=f"{server}/fhir")
    url = f"{server}/auth/authorize"
    with httpx.Client(timeout=30) as browser:
        for _ in range(demo.settings.login_max_failures):  # spread over the server's two workers
            r = browser.post(url, data={**params, "username": "patient.paula", "password": "wrong-password",
                                        "action": "login"})
            assert r.status_code == 401
        r = browser.post(url, data={**params, "username": "patient.paula", "password": DEMO_PASSWORD,
                                    "action": "login"})
        assert r.status_code == 429
    # This test process (another "worker", on the same database) sees the same lockout.
    local = authorize_params(challenge)
    assert login(anon_client, local, "patient.paula").status_code == 429
    assert login(anon_client, local, "patient.pat").status_code == 302


def test_unauthenticated_requests_to_the_running_server(demo, server):
    r = httpx.get(f"{server}/fhir/Patient/pat-pat")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith(f'Bearer realm="{server}/fhir"')
    assert httpx.get(f"{server}/fhir/metadata").status_code == 200
    conf = httpx.get(f"{server}/fhir/.well-known/smart-configuration").json()
    assert conf["token_endpoint"] == f"{server}/auth/token"
