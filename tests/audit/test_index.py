"""Our AuditEvents are indexed natively (no FHIRPath on the hot path): the rows must equal the generic ones."""

from __future__ import annotations

import orjson
import pytest

from service.access.context import Principal, RequestContext
from service.access.record import RequestRecord
from service.audit import codes as c
from service.audit import index as fast
from service.audit.events import audit_event, rest_event
from service.search import indexer

BASE = "http://testserver/fhir"


def _ctx(kind: str = "practitioner", purpose: tuple[str, ...] = ("TREAT",)) -> RequestContext:
    return RequestContext(Principal(subject="nurse.jo", kind=kind, client_id="portal", fhir_user="Practitioner/p1",
                                    organisation="Organization/o1", ods_code="RX1", role_code="R8001",
                                    roles=frozenset({"clinician"}), token_id="tok-1"),
                          purpose_of_use=purpose, break_glass_reason="emergency" if "BTG" in purpose else None,
                          remote_addr="10.0.0.1")


def _events() -> list[dict]:
    patient = orjson.dumps({"resourceType": "Patient", "id": "pat-1", "meta": {"versionId": "2"}})
    bundle = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/pat-1"}}},
        {"resource": {"resourceType": "Patient", "id": "pat-2"}}]})
    oo = orjson.dumps({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found",
                                                                       "diagnostics": "Patient/x is not known"}]})
    out = [
        rest_event(_ctx(), RequestRecord(interaction="read"), BASE, method="GET", path="Patient/pat-1", params=[],
                   status=200,
                   body=patient, headers={"ETag": 'W/"2"'})[0],
        rest_event(_ctx(purpose=("BTG",)), RequestRecord(interaction="search-type", patients={"pat-1": None}), BASE,
                   method="GET", path="Observation",
                   params=[("subject", "Patient/pat-1")], status=200, body=bundle, headers={})[0],
        rest_event(_ctx("system"), RequestRecord(interaction="read"), BASE, method="GET", path="Patient/x", params=[],
                   status=404,
                   body=oo, headers={})[0],
        rest_event(None, RequestRecord(interaction="unknown"), BASE, method="GET", path="Nope", params=[], status=401,
                   body=oo,
                   headers={})[0],
        audit_event(_ctx(), BASE, type=c.TYPE_LOGIN, subtype=[c.SUBTYPE_LOGIN], outcome="4", outcome_desc="bad"),
    ]
    for i, ev in enumerate(out):
        ev["id"] = f"ev-{i}"
        ev["meta"] = {"versionId": "1", "lastUpdated": "2024-05-01T10:00:00.000000+00:00"}
    return out


@pytest.mark.parametrize("event", _events(), ids=lambda e: e["id"])
def test_native_index_rows_equal_the_generic_ones(event):
    assert fast.index_rows("AuditEvent", event["id"], event, BASE) == \
        indexer.index_rows("AuditEvent", event["id"], event, BASE, ())


def test_native_index_has_purpose_rows_from_the_event_and_its_agents():
    btg = _events()[1]
    rows = [(r["system"], r["code"], r["text"]) for r in fast.index_rows("AuditEvent", btg["id"], btg, BASE)["token"]
            if r["param"] == "purpose"]
    # purposeOfEvent and the agent's purposeOfUse give one distinct coding row; the reason is its text
    assert rows == [(c.ACT_REASON, "BTG", None), ("", "", "emergency")]
