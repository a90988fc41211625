"""The SearchFilter contract: restrictions applied in SQL before paging, so totals, includes, chains
and _has never reveal hidden resources; check_type refusals on included types fail the search."""

from __future__ import annotations

from typing import Any

from test_search_api import R_LABEL, get, ids, world  # noqa: F401  (fixture)

from service.access.guard import AllowAll
from service.fhir.outcome import forbidden
from service.search.filter import SearchFilter


class FilterGuard(AllowAll):
    def __init__(self, filters: dict[str, SearchFilter | None], default: SearchFilter | None = None,
                 forbid: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.filters, self.default, self.forbid, self.seen = filters, default, forbid, 0

    def check_type(self, ctx: Any, interaction: str, rtype: str | None) -> None:
        if rtype in self.forbid:
            raise forbidden(f"no access to {rtype}")

    def search_filter(self, ctx: Any, rtype: str) -> SearchFilter | None:
        return self.filters.get(rtype, self.default)

    def can_see(self, ctx: Any, rtype: str, resource: dict[str, Any]) -> bool:
        self.seen += 1
        return True


def test_patient_confinement_applies_before_paging(client, guarded, world):  # type: ignore[no-untyped-def]  # noqa: F811
    ann, bob = world["ann"]["id"], world["bob"]["id"]
    with guarded(FilterGuard({}, SearchFilter.only_patients(ann))):
        body = get(client, "Patient?_count=1")
        assert ids(body) == [ann] and body["total"] == 1
        assert not [lk for lk in body["link"] if lk["relation"] == "next"]
        assert get(client, "CarePlan?status=active")["total"] == 1
        assert get(client, f"CarePlan?subject={bob}")["total"] == 0
        assert get(client, "Organization")["total"] == 1  # outside any compartment: not confined
        body = get(client, f"Patient?_id={ann},{bob}&_revinclude=CarePlan:subject")
        assert {e["resource"]["id"] for e in body["entry"]} == {ann} | {p["id"] for p in world["plans"][:2]}
        assert get(client, "Organization?_has:Patient:organization:gender=male")["total"] == 0
        assert get(client, f"Patient/{bob}/CarePlan")["total"] == 0
        assert get(client, f"Patient/{bob}/$everything", 404)
        assert get(client, "?_type=Patient,CarePlan")["total"] == 3
    with guarded(FilterGuard({}, SearchFilter.only_patients(ann, confine_non_compartment=True))):
        assert get(client, "Organization")["total"] == 0


def test_security_labels_and_deny(client, guarded, world):  # type: ignore[no-untyped-def]  # noqa: F811
    ann = world["ann"]["id"]
    with guarded(FilterGuard({"Patient": SearchFilter(exclude_security=frozenset({R_LABEL}))})):
        assert ids(get(client, "Patient")) == [ann]
        assert get(client, "Patient?gender=male")["total"] == 0
        # a chain through a hidden patient finds nothing
        assert get(client, "CarePlan?subject.name=smith")["total"] == 0
    with guarded(FilterGuard({"CarePlan": SearchFilter.deny()})):
        body = get(client, "CarePlan")
        assert body["total"] == 0 and "entry" not in body
        assert get(client, "Patient?_has:CarePlan:subject:status=active")["total"] == 0
        body = get(client, f"Patient?_id={ann}&_revinclude=CarePlan:subject")
        assert [e["resource"]["resourceType"] for e in body["entry"]] == ["Patient"]


def test_forbidden_included_type_fails_the_search(client, guarded, world):  # type: ignore[no-untyped-def]  # noqa: F811
    with guarded(FilterGuard({}, forbid={"Organization"})):
        r = client.get("/fhir/Patient?_include=Patient:organization")
        assert r.status_code == 403 and "Organization" in r.text
        r = client.get(f"/fhir/Patient/{world['ann']['id']}/$everything")
        assert r.status_code == 403
        assert client.get("/fhir/Patient").status_code == 200
    with guarded(FilterGuard({}, forbid={"Patient"})):
        assert client.get("/fhir/Patient?name=x").status_code == 403
