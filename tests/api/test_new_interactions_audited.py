"""Every access through the newer interactions is audited: one event each, naming the person whose record it was
(304 conditional reads, the three PATCH formats and conditional patch, $meta-add, $meta, $everything at both
levels), on both databases."""

from __future__ import annotations

from tests.api.support import patient
from tests.audit.support import events, patients, subtype


def test_each_new_interaction_writes_one_event_naming_the_person(client):  # type: ignore[no-untyped-def]
    pid = client.post("/fhir/Patient", json=patient(identifier=[{"system": "urn:x", "value": "a1"}])).json()["id"]
    url = f"/fhir/Patient/{pid}"
    fhirpath = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
        {"name": "name", "valueString": "active"}, {"name": "value", "valueBoolean": True}]}]}
    steps = [
        (client.get(url, headers={"If-None-Match": 'W/"1"'}), 304, "read"),
        (client.get(f"{url}/_history/1", headers={"If-None-Match": "*"}), 304, "vread"),
        (client.get(f"{url}?_summary=true"), 200, "read"),
        (client.patch(url, json=fhirpath, headers={"Content-Type": "application/fhir+json"}), 200, "patch"),
        (client.patch(url, json={"gender": "male"}, headers={"Content-Type": "application/merge-patch+json"}), 200,
         "patch"),
        (client.patch("/fhir/Patient?identifier=urn:x|a1", json={"gender": "other"},
                      headers={"Content-Type": "application/merge-patch+json"}), 200, "patch"),
        (client.post(f"{url}/$meta-add", json={"resourceType": "Parameters", "parameter": [
            {"name": "meta", "valueMeta": {"tag": [{"system": "urn:t", "code": "x"}]}}]}), 200, None),
        (client.get(f"{url}/$meta"), 200, None),
        (client.get(f"{url}/$everything"), 200, None),
    ]
    for resp, status, _ in steps:
        assert resp.status_code == status, resp.text
    trail = events(client)
    assert len(trail) == 1 + len(steps), [subtype(e) for e in trail]
    for ev, (_resp, _status, code) in zip(trail[1:], steps, strict=True):
        if code is not None:
            assert subtype(ev) == code, ev
        assert ev["outcome"] == "0"
        assert patients(ev) == [f"Patient/{pid}"], ev
