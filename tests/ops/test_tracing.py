"""OpenTelemetry tracing as an operator switches it on: `sharedcare serve --workers 2` with
SHAREDCARE_TRACING=otlp exports over OTLP/HTTP to a collector (a receiver this test runs on loopback). A FHIR
request is a server span named by interaction and type, with the policy decision, the SQL statements and the
audit group commit as its children; an incoming traceparent is honoured; and nothing personal (names, NHS
numbers, ids, tokens, search values) is in any span. Off (the default), nothing is sent, even with the OTLP
endpoint set. SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import pytest

from service.config import load_settings
from tests.ops.otlp_receiver import Receiver, Span
from tests.ops.support import nhs_number, server_env
from tests.running import running_server

GIVEN, FAMILY = "Ottoline", "Fairweather-Quince"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
SERVER, CLIENT = 2, 3
HOOK_SECRET = "gp-inbox-secret-4471"
FHIR = {"Content-Type": "application/fhir+json"}
OBSERVATION = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
               "subject": {"reference": "Patient/pat-pat"}, "effectiveDateTime": "2026-01-15T09:00:00Z",
               "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}


def _env(settings: Any, receiver: Receiver, **extra: str) -> dict[str, str]:
    return server_env(settings, **{"SHAREDCARE_TRACING": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                                   "OTEL_SERVICE_NAME": "sharedcare-test", "OTEL_BSP_SCHEDULE_DELAY": "100", **extra})


def _server(spans: list[Span], request_id: str) -> Span:
    found = [s for s in spans if s.kind == SERVER and s.attributes.get("sharedcare.request_id") == request_id]
    assert len(found) == 1, (request_id, [(s.name, s.attributes) for s in spans if s.kind == SERVER])
    return found[0]


def _below(spans: list[Span], top: Span) -> list[Span]:
    """Every span under `top` (children, their children, ...)."""
    out, ids = [], {top.span_id}
    grew = True
    while grew:
        grew = False
        for s in spans:
            if s.parent_id in ids and s.span_id not in ids:
                ids.add(s.span_id)
                out.append(s)
                grew = True
    return out


def test_fhir_requests_are_traced_without_personal_data(demo, settings, auth_headers, tmp_path):  # type: ignore[no-untyped-def]
    nina, admin, gp = auth_headers("nurse.nina"), auth_headers(), auth_headers(client="gp-system")
    nhs = nhs_number("948271635")
    patient = {"resourceType": "Patient", "name": [{"given": [GIVEN], "family": FAMILY}],
               "identifier": [{"system": NHS_SYSTEM, "value": nhs}], "birthDate": "1958-07-30"}
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    receiver = Receiver()
    env = _env(settings, receiver, SHAREDCARE_EXPORT_POLL_SECONDS="0.2", SHAREDCARE_AUDIT_SEAL_SECONDS="1",
               SHAREDCARE_AUDIT_ANCHOR=str(tmp_path / "anchor.jsonl"), SHAREDCARE_SUBSCRIPTION_POLL_SECONDS="0.1")
    with receiver, running_server(tmp_path / "srv", env, workers=2) as base, \
            httpx.Client(base_url=base, timeout=60) as h:
        # the GP system's subscription (its endpoint refuses: the delivery is retried later)
        hook = {"type": "rest-hook", "endpoint": f"{receiver.endpoint}/hook", "payload": "application/fhir+json",
                "header": [f"Authorization: Bearer {HOOK_SECRET}"]}
        sub = h.post("/fhir/Subscription", headers={**gp, **FHIR}, json={
            "resourceType": "Subscription", "status": "requested", "reason": "Keep the GP system in step",
            "criteria": "Observation?subject=Patient/pat-pat", "channel": hook})
        assert sub.status_code == 201, sub.text
        read = h.get("/fhir/Patient/pat-pat", headers={**nina, "traceparent": f"00-{trace_id}-{parent_id}-01"})
        assert read.status_code == 200 and "Example" in read.text
        search = h.get("/fhir/CarePlan", params={"subject": "Patient/pat-pat"}, headers=nina)
        assert search.status_code == 200
        created = h.post("/fhir/Observation", json=OBSERVATION, headers={**nina, **FHIR})
        assert created.status_code == 201, created.text
        denied = h.get("/fhir/Patient/pat-paula", headers=nina)
        assert denied.status_code == 404
        registered = h.post("/fhir/Patient", json=patient, headers={**admin, **FHIR})
        assert registered.status_code == 201, registered.text
        by_name = h.get("/fhir/Patient", params={"family": FAMILY, "given": GIVEN}, headers=admin)
        by_nhs = h.get("/fhir/Patient", params={"identifier": f"{NHS_SYSTEM}|{nhs}"}, headers=admin)
        assert by_name.json()["total"] == 1 and by_nhs.json()["total"] == 1
        ids = [r.headers["x-request-id"] for r in (read, search, created, denied, registered, by_name, by_nhs)]
        kicked = h.get("/fhir/Patient/$export", params={"_type": "Patient,Observation"},
                       headers={**gp, "Prefer": "respond-async", "Accept": "application/fhir+json"})
        assert kicked.status_code == 202, kicked.text
        status = kicked.headers["content-location"].replace(settings.base_url, base)
        deadline = time.monotonic() + 120
        while (polled := h.get(status, headers=gp)).status_code == 202:
            assert time.monotonic() < deadline, "the export did not finish"
            time.sleep(0.2)
        assert polled.status_code == 200, polled.text
        spans = receiver.wait_for(lambda got: {s.attributes.get("sharedcare.request_id") for s in got
                                               if s.kind == SERVER} >= set(ids)
                                  and any(s.name == "export job" for s in got)
                                  and any(s.name == "subscription delivery" for s in got)
                                  and any(s.name == "audit seal" and s.attributes["sharedcare.audit.sealed_rows"]
                                          for s in got))
    spans = list(receiver.spans)  # (and whatever the workers flushed as they stopped)

    # one server span per request, named by interaction and type, with its status
    expected = {ids[0]: ("read Patient", "read", 200), ids[1]: ("search-type CarePlan", "search-type", 200),
                ids[2]: ("create Observation", "create", 201), ids[3]: ("read Patient", "read", 404),
                ids[4]: ("create Patient", "create", 201), ids[5]: ("search-type Patient", "search-type", 200)}
    for rid, (name, interaction, status) in expected.items():
        s = _server(spans, rid)
        assert (s.name, s.attributes["fhir.interaction"], s.attributes["http.response.status_code"]) == \
            (name, interaction, status)
        assert s.attributes["http.request.method"] in ("GET", "POST")
        assert s.attributes["fhir.resource_type"] == name.split(" ")[1]
        assert s.status == 0  # (unset: a 404 is the caller's, not a server error)
        assert s.resource["service.name"] == "sharedcare-test"

    # the incoming traceparent is the read's parent
    first = _server(spans, ids[0])
    assert (first.trace_id, first.parent_id) == (trace_id, parent_id)
    assert _server(spans, ids[1]).trace_id != trace_id  # (a request without one starts its own trace)

    # children: the policy decision, the statements, the audit's group commit
    under = _below(spans, first)
    assert all(s.trace_id == trace_id for s in under)
    decide = [s for s in under if s.name == "policy decide"]
    assert [d.attributes["sharedcare.policy.verdict"] for d in decide] == ["permit"]
    assert decide[0].attributes["fhir.resource_type"] == "Patient" and decide[0].parent_id == first.span_id
    statements = [s for s in under if s.kind == CLIENT]
    assert statements and all(s.attributes["db.system.name"] in ("postgresql", "sqlite") for s in statements)
    row = [s for s in statements if s.name == "SELECT resource"]
    assert len(row) == 1 and row[0].end <= decide[0].start  # (the row and its facts, then the decision on them)
    for s in under:  # (each within its parent's time)
        parent = next(p for p in [first, *under] if p.span_id == s.parent_id)
        assert parent.start <= s.start <= s.end <= parent.end, (s.name, parent.name)
    assert any(s.name == "audit commit" and s.attributes["sharedcare.audit.rows"] == 1 for s in under)

    hidden = [s for s in _below(spans, _server(spans, ids[3])) if s.name == "policy decide"]
    assert [s.attributes["sharedcare.policy.verdict"] for s in hidden] == ["hidden"]
    search_policy = [s for s in _below(spans, _server(spans, ids[1])) if s.name == "policy search"]
    assert search_policy and search_policy[0].attributes["fhir.resource_type"] == "CarePlan"
    write = _below(spans, _server(spans, ids[2]))
    assert [s.attributes["sharedcare.policy.verdict"] for s in write if s.name == "policy decide"] == ["permit"]
    inserts = [s for s in write if s.kind == CLIENT and s.attributes["db.operation.name"] == "INSERT"]
    assert {"INSERT resource", "INSERT audit_log"} <= {s.name for s in inserts}, [s.name for s in inserts]

    # background work is its own trace: the export job, run by a worker process's export thread as the client
    job = [s for s in spans if s.name == "export job"]
    assert len(job) == 1 and job[0].parent_id == "" and job[0].kind == 1
    assert job[0].attributes["sharedcare.export.outcome"] == "done"
    assert job[0].trace_id not in {s.trace_id for s in spans if s.kind == SERVER}
    in_job = _below(spans, job[0])
    assert {"policy search", "SELECT resource", "INSERT export_chunk"} <= {s.name for s in in_job}, \
        sorted({s.name for s in in_job})

    # ... and each subscription delivery attempt, as the subscription's owner
    delivery = next(s for s in spans if s.name == "subscription delivery")
    assert delivery.parent_id == "" and delivery.attributes["fhir.resource_type"] == "Observation"
    assert delivery.attributes["sharedcare.delivery.state"] == "pending"  # (the endpoint refused: tried again later)
    assert delivery.attributes["http.response.status_code"] >= 400
    assert "SELECT resource_version" in {s.name for s in _below(spans, delivery)}

    # ... and each seal run (by the supervising process, with two workers)
    seal = next(s for s in spans if s.name == "audit seal" and s.attributes["sharedcare.audit.sealed_rows"])
    assert seal.parent_id == "" and seal.attributes["sharedcare.audit.seals"] >= 1
    assert "INSERT audit_seal" in {s.name for s in _below(spans, seal)}

    # nothing personal anywhere: names, NHS numbers, ids, tokens, search values, bodies
    created_ids = [created.json()["id"], registered.json()["id"]]
    private = [GIVEN, FAMILY, FAMILY.lower(), nhs, "9434765919", "pat-pat", "pat-paula", "Example", "1958-07-30",
               "72.5", HOOK_SECRET, "/hook", sub.json()["id"], *created_ids, nina["Authorization"][7:], admin["Authorization"][7:],
               nina["Authorization"][-24:], "Bearer"]
    for s in spans:
        text = s.text()
        for secret in private:
            assert secret not in text, f"{secret[:16]!r} is in the span {s.name!r}: {text[:600]}"


def test_tracing_off_sends_nothing(demo, settings, auth_headers, tmp_path):  # type: ignore[no-untyped-def]
    nina = auth_headers("nurse.nina")
    with Receiver() as receiver:
        # the collector's address is configured (and FastAPI's own auto-configuration asked for), the switch is not
        env = server_env(settings, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100",
                         FASTAPI_OTEL_AUTO_CONFIGURE="true")
        with running_server(tmp_path / "srv", env, workers=2) as base, httpx.Client(base_url=base, timeout=60) as h:
            assert h.get("/fhir/Patient/pat-pat", headers=nina).status_code == 200
            assert h.get("/fhir/CarePlan", params={"subject": "Patient/pat-pat"}, headers=nina).status_code == 200
            assert h.get("/fhir/Patient/pat-paula", headers=nina).status_code == 404
            assert h.get("/fhir/metadata").status_code == 200
        assert receiver.posts == 0 and receiver.spans == []


def test_the_switch_is_a_setting() -> None:
    assert load_settings(tracing="OTLP").tracing == "otlp"
    assert load_settings().tracing == "off"
    with pytest.raises(SystemExit) as bad:
        load_settings(tracing="jaeger")
    assert "SHAREDCARE_TRACING" in str(bad.value) and "jaeger" in str(bad.value)


def test_what_is_buffered_is_exported_when_the_server_stops(demo, settings, auth_headers, tmp_path):  # type: ignore[no-untyped-def]
    nina = auth_headers("nurse.nina")
    with Receiver() as receiver:
        # a batch delay longer than the test: the spans can only leave as each worker shuts down
        env = _env(settings, receiver, OTEL_BSP_SCHEDULE_DELAY="600000")
        with running_server(tmp_path / "srv", env, workers=2) as base, httpx.Client(base_url=base, timeout=60) as h:
            ids = [h.get("/fhir/Patient/pat-pat", headers=nina).headers["x-request-id"] for _ in range(6)]
            time.sleep(1)
            assert receiver.spans == []
        got = receiver.wait_for(lambda spans: {s.attributes.get("sharedcare.request_id") for s in spans} >= set(ids),
                                seconds=10)
    assert {s.name for s in got if s.kind == SERVER} == {"read Patient"}
