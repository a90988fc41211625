"""/openapi.json publishes the FHIR API: every type's interactions, search parameters and $operations, from the
same definitions as the CapabilityStatement, built on first use and cached."""

from __future__ import annotations


def test_openapi_lists_the_fhir_api_as_the_capability_statement_does(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200, r.text
    spec = r.json()
    paths = spec["paths"]
    cap = client.get("/fhir/metadata").json()["rest"][0]
    methods = {"read": ("/{id}", "get"), "update": ("/{id}", "put"), "delete": ("/{id}", "delete"),
               "patch": ("/{id}", "patch"), "create": ("", "post"), "search-type": ("", "get"),
               "vread": ("/{id}/_history/{vid}", "get"), "history-instance": ("/{id}/_history", "get"),
               "history-type": ("/_history", "get")}
    for entry in cap["resource"]:
        t = entry["type"]
        codes = {i["code"] for i in entry["interaction"]}
        for code, (suffix, method) in methods.items():
            published = method in paths.get(f"/fhir/{t}{suffix}", {})
            assert published == (code in codes), (t, code)
        search = paths[f"/fhir/{t}"]["get"]
        names = {p["name"] for p in search["parameters"]}
        assert {p["name"] for p in entry.get("searchParam", [])} <= names, t
        assert {"_count", "_sort", "_include"} <= names
        for op in entry.get("operation", []):
            assert any(p.endswith(f"/${op['name']}") and p.startswith(f"/fhir/{t}") for p in paths), (t, op)
    # the append-only audit trail: read and search, never changed
    assert set(paths["/fhir/AuditEvent/{id}"]) == {"get"}
    assert "post" in paths["/fhir/QuestionnaireResponse/{id}/$save-answers"]
    assert {p["name"] for p in paths["/fhir/Patient"]["get"]["parameters"]} >= {"name", "identifier", "birthdate"}
    # errors are OperationOutcomes, and the FHIR paths need a bearer token (but metadata)
    assert paths["/fhir/Patient/{id}"]["get"]["responses"]["default"]["content"]["application/fhir+json"]["schema"] \
        == {"$ref": "#/components/schemas/OperationOutcome"}
    assert paths["/fhir/Patient/{id}"]["get"]["security"] == [{"bearer": []}]
    assert paths["/fhir/metadata"]["get"]["security"] == []
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["openapi"].startswith("3.") and spec["info"]["title"]
    # cached: the second answer is the same document, the one the app built and kept
    cached = client.app.openapi_schema
    assert cached is not None
    again = client.get("/openapi.json")
    assert again.json() == spec and client.app.openapi_schema is cached
