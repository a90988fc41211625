"""The CapabilityStatement only tells the truth (service/interactions/capability.py, service/fhir/conformance.py),
on both databases: every operation it lists links to an OperationDefinition served at that URL (a valid R4
resource naming the operation), and every extension the server adds to resources has a StructureDefinition
served at the URL listed, with its canonical URL."""

from __future__ import annotations

import re
from pathlib import Path

from service.fhir.conformance import EXTENSIONS, NAMESPACE
from service.fhir.validation import validate_resource

SERVICE = Path(__file__).resolve().parents[2] / "service"


def _operations(cap):  # type: ignore[no-untyped-def]
    rest = cap["rest"][0]
    ops = [(None, o) for o in rest.get("operation", [])]
    ops += [(r["type"], o) for r in rest["resource"] for o in r.get("operation", [])]
    return ops


def test_every_listed_operation_definition_is_served_at_its_link(client, services):
    cap = client.get("/fhir/metadata").json()
    ops = _operations(cap)
    assert len(ops) >= 20
    links = {o["definition"] for _t, o in ops}
    assert all(link.startswith("http://testserver/fhir/OperationDefinition/") for link in links), links
    names = {}
    for link in sorted(links):
        r = client.get(link.replace("http://testserver", ""))
        assert r.status_code == 200, (link, r.text[:200])
        body = r.json()
        assert body["resourceType"] == "OperationDefinition" and body["id"] == link.rsplit("/", 1)[1]
        validate_resource(body)  # a valid R4 resource
        names[link] = body["code"]
    for rtype, o in ops:
        assert names[o["definition"]] == o["name"], o
        body = client.get(o["definition"].replace("http://testserver", "")).json()
        if rtype is not None:
            assert body["type"] or body["instance"]
            assert rtype in body.get("resource", []) or "Resource" in body.get("resource", []), (rtype, body)
        else:
            assert body["system"] is True
    # every operation in the registry is listed, $validate on every type
    registered = {op.name for _k, op in services.operations.items()}
    assert registered == {o["name"] for _t, o in ops}
    patient_ops = {o["name"] for t, o in ops if t == "Patient"}
    assert {"validate", "everything"} <= patient_ops
    standard = client.get("/fhir/OperationDefinition/Resource-validate").json()
    assert standard["url"] == "http://hl7.org/fhir/OperationDefinition/Resource-validate"


def test_every_extension_the_server_adds_is_defined_served_and_listed(client):
    used = set()
    for path in SERVICE.rglob("*.py"):
        text = path.read_text()
        used |= set(re.findall(re.escape(NAMESPACE) + r"([a-z0-9-]+)", text))
        if "SD = " in text and NAMESPACE in text:  # service/workflows/codes.py: SD + "name"
            used |= set(re.findall(r'SD \+ "([a-z0-9-]+)"', text))
    for path in (SERVICE.parent / "fhir_profiles").rglob("*.py"):
        used |= set(re.findall(re.escape(NAMESPACE) + r"([a-z0-9-]+)", path.read_text()))
    assert {"authoring-organisation", "answer-author", "careplan-agreement"} <= used
    defined = {e.id for e in EXTENSIONS if e.canonical is None}
    assert used <= defined, sorted(used - defined)
    cap = client.get("/fhir/metadata").json()
    sd_entry = next(r for r in cap["rest"][0]["resource"] if r["type"] == "StructureDefinition")
    for ext_id in sorted(defined):
        link = f"http://testserver/fhir/StructureDefinition/{ext_id}"
        assert link in sd_entry["documentation"]
        r = client.get(link.replace("http://testserver", ""))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["url"] == NAMESPACE + ext_id and body["type"] == "Extension"
        validate_resource(body)


def test_every_structure_definition_the_capability_statement_names_is_served(client):
    text = client.get("/fhir/metadata").text
    named = set(re.findall(r'"(https?://[^"]*/StructureDefinition/[^"]+)"', text))
    assert "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris" in named
    for url in sorted(named):
        if url.startswith("http://testserver/"):
            r = client.get(url.replace("http://testserver", ""))
            assert r.status_code == 200 and r.json()["url"].endswith(url.rsplit("/", 1)[1])
            continue
        r = client.get(f"/fhir/StructureDefinition/{url.rsplit('/', 1)[1]}")
        assert r.status_code == 200, url
        assert r.json()["url"] == url
        validate_resource(r.json())


def test_stored_definitions_are_still_read_and_unknown_ones_are_404(client):
    assert client.get("/fhir/OperationDefinition/nothing-here").status_code == 404
    r = client.post("/fhir/OperationDefinition", json={
        "resourceType": "OperationDefinition", "name": "Mine", "status": "draft", "kind": "operation",
        "code": "mine", "system": True, "type": False, "instance": False})
    assert r.status_code == 201, r.text
    assert client.get(f"/fhir/OperationDefinition/{r.json()['id']}").json()["code"] == "mine"
