"""Helpers for the joint assessment and care plan tests: answer builders and per-user API callers."""

from __future__ import annotations

from typing import Any

CS = "https://sharedcare.example.org/fhir/CodeSystem/"
ACHIEVE = CS + "assessment-outcome-achievement"
LEVEL = CS + "assessment-need-level"
ANSWER = CS + "assessment-answer"
SHARING = CS + "assessment-sharing-wish"
RISK_LEVEL = CS + "assessment-risk-level"
AUTHOR_URL = "https://sharedcare.example.org/fhir/StructureDefinition/answer-author"
PREFILLED_URL = "https://sharedcare.example.org/fhir/StructureDefinition/assessment-prefilled-items"
REVIEW_URL = "https://sharedcare.example.org/fhir/StructureDefinition/careplan-review-date"
AGREEMENT_URL = "https://sharedcare.example.org/fhir/StructureDefinition/careplan-agreement"
JOINT_URL = "https://sharedcare.example.org/fhir/Questionnaire/joint-assessment"
JOINT_VERSION = "1.1.0"  # the current packaged version of the form

CARE_ACT = ["care-act.nutrition", "care-act.personal-hygiene", "care-act.toilet-needs", "care-act.clothing",
            "care-act.home-safety", "care-act.habitable-home", "care-act.relationships", "care-act.work-education",
            "care-act.community", "care-act.caring-for-child"]
HEALTH = ["health.falls", "health.skin", "health.continence", "health.nutrition-hydration", "health.medicines",
          "health.breathing", "health.pain", "health.memory-cognition", "health.mental-health"]


def coding(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code}


def a(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, float):
        return {"valueDecimal": value}
    if isinstance(value, dict) and "code" in value:
        return {"valueCoding": value}
    if isinstance(value, dict) and "reference" in value:
        return {"valueReference": value}
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        return {"valueDate": value}
    return {"valueString": value}


def ans(link_id: str, *values: Any) -> dict[str, Any]:
    return {"linkId": link_id, "answer": [a(v) for v in values]}


def grp(link_id: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {"linkId": link_id, "item": list(items)}


def fragment(*items: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "QuestionnaireResponse", "status": "in-progress", "item": list(items)}


def params(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(parts)}


def save_body(base: int, *items: dict[str, Any], sections: tuple[str, ...] = (), reason: str | None = None
              ) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"name": "response", "resource": fragment(*items)},
                                   {"name": "baseVersion", "valueInteger": base}]
    parts += [{"name": "section", "valueString": s} for s in sections]
    if reason:
        parts.append({"name": "reason", "valueString": reason})
    return params(*parts)


def care_act_section(unmet: tuple[str, ...] = ("care-act.nutrition", "care-act.personal-hygiene"),
                     levels: bool = True) -> dict[str, Any]:
    """The Care Act section; `levels=False` leaves out the level of need (form version 1.0.0 has none)."""
    groups = []
    for lid in CARE_ACT:
        if lid in unmet:
            level = [ans(f"{lid}.level", coding(LEVEL, "moderate"))] if levels else []
            groups.append(grp(lid, ans(f"{lid}.need", coding(ACHIEVE, "needs-assistance")), *level,
                              ans(f"{lid}.significant-impact", True),
                              ans(f"{lid}.impact", "Skips meals and has lost weight")))
        else:
            groups.append(grp(lid, ans(f"{lid}.need", coding(ACHIEVE, "achieves-unaided"))))
    return grp("care-act", ans("care-act.needs-from-impairment", True), *groups)


def health_section(falls_level: str = "moderate") -> dict[str, Any]:
    return grp(
        "health",
        grp("health.falls", ans("health.falls.need", coding(LEVEL, falls_level)), ans("health.falls.history", True),
            ans("health.falls.count", 3), ans("health.falls.referral", True)),
        grp("health.skin", ans("health.skin.need", coding(LEVEL, "none"))),
        grp("health.continence", ans("health.continence.need", coding(LEVEL, "low"))),
        grp("health.nutrition-hydration", ans("health.nutrition-hydration.need", coding(LEVEL, "moderate"))),
        grp("health.medicines", ans("health.medicines.need", coding(LEVEL, "low")),
            ans("health.medicines.management", coding(ANSWER, "meds-prompting"))),
        grp("health.breathing", ans("health.breathing.need", coding(LEVEL, "none"))),
        grp("health.pain", ans("health.pain.need", coding(LEVEL, "low")), ans("health.pain.has-pain", False)),
        grp("health.memory-cognition", ans("health.memory-cognition.need", coding(LEVEL, "none"))),
        grp("health.mental-health", ans("health.mental-health.need", coding(LEVEL, "none"))),
    )


def about_me_extra() -> dict[str, Any]:
    return grp("about-me", ans("about-me.interpreter-needed", False),
               ans("about-me.what-matters", "Staying in my own home with my cat, and seeing my grandchildren"))


def carers_section() -> dict[str, Any]:
    return grp("carers", ans("carers.has-carer", True),
               grp("carers.carer", ans("carers.carer.name", "Carl Example"), ans("carers.carer.willing-able", True),
                   ans("carers.carer.assessment-offered", True), ans("carers.carer.assessment-wanted", True)))


def other_sections() -> list[dict[str, Any]]:
    return [
        grp("risks", ans("risks.safeguarding-concern", False)),
        grp("tec", ans("tec.would-benefit", True), ans("tec.suggested", coding(ANSWER, "tec-pendant-alarm"))),
        grp("sharing", ans("sharing.discussed", True), ans("sharing.discussed-date", "2026-11-20"),
            ans("sharing.wishes", coding(SHARING, "share-direct-care"))),
    ]


def find_item(resp: dict[str, Any], link_id: str) -> dict[str, Any]:
    stack = list(resp.get("item", []))
    while stack:
        it = stack.pop(0)
        if it["linkId"] == link_id:
            return it
        stack.extend(it.get("item", []))
        for answer in it.get("answer", []):
            stack.extend(answer.get("item", []))
    raise KeyError(link_id)


def author_of(resp: dict[str, Any], link_id: str) -> dict[str, Any]:
    ext = next(e for e in find_item(resp, link_id).get("extension", []) if e["url"] == AUTHOR_URL)
    out = {}
    for sub in ext["extension"]:
        out[sub["url"]] = next(v for k, v in sub.items() if k.startswith("value"))
    return out


def ext(resource: dict[str, Any], url: str) -> Any:
    e = next((e for e in resource.get("extension", []) if e["url"] == url), None)
    if e is None:
        return None
    return next((v for k, v in e.items() if k.startswith("value")), e)


def version(resp: Any) -> int:
    return int(resp.json()["meta"]["versionId"])


class As:
    """Requests as one user: `nina = As(client, auth_headers("nurse.nina"))`; `nina.post(url, json=...)`."""

    def __init__(self, client: Any, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def post(self, url: str, **kw: Any) -> Any:
        return self.client.post(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def put(self, url: str, **kw: Any) -> Any:
        return self.client.put(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def patch(self, url: str, **kw: Any) -> Any:
        return self.client.patch(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def delete(self, url: str, **kw: Any) -> Any:
        return self.client.delete(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)


def finished_assessment(users: dict[str, Any], patient: str = "pat-pat") -> str:
    """A completed joint assessment answered by nina (health) and sam (social care); its URL."""
    r = users["nina"].post(f"/fhir/Patient/{patient}/$start-assessment")
    assert r.status_code == 201, r.text
    url = f"/fhir/QuestionnaireResponse/{r.json()['id']}"
    r = users["sam"].post(f"{url}/$save-answers", json=save_body(1, care_act_section(), carers_section()))
    assert r.status_code == 200, r.text
    r = users["nina"].post(f"{url}/$save-answers", json=save_body(2, health_section(), about_me_extra(),
                                                                   *other_sections()))
    assert r.status_code == 200, r.text
    r = users["nina"].post(f"{url}/$complete")
    assert r.status_code == 200, r.text
    return url


def transition(status: str, reason: str | None = None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"name": "status", "valueCode": status}]
    if reason:
        parts.append({"name": "reason", "valueString": reason})
    return params(*parts)


ACTIVITY = "https://sharedcare.example.org/fhir/CodeSystem/workflow-activity"


def provenance_for(caller: Any, ref: str) -> list[dict[str, Any]]:
    """Provenance whose target is a version of `ref`, oldest first."""
    out = []
    url = "/fhir/Provenance?_count=1000"
    while url:
        body = caller.get(url).json()
        out += [e["resource"] for e in body.get("entry", [])
                if any(t["reference"].startswith(ref + "/_history/") for t in e["resource"]["target"])]
        nxt = [lk["url"] for lk in body.get("link", []) if lk["relation"] == "next"]
        url = nxt[0].split("http://testserver", 1)[-1] if nxt else ""
    return sorted(out, key=lambda p: int(p["target"][0]["reference"].rsplit("/", 1)[1]))


def summary(p: dict[str, Any]) -> tuple[str, str, str, str]:
    codes = {c["system"]: c["code"] for c in p["activity"]["coding"]}
    agent = p["agent"][0]
    return (p["target"][0]["reference"].rsplit("/", 1)[1], codes.get(ACTIVITY, codes.get(
        "http://terminology.hl7.org/CodeSystem/v3-DataOperation")), agent["who"].get("reference", ""),
        agent.get("onBehalfOf", {}).get("reference", ""))


def op_params(**values: Any) -> dict[str, Any]:
    """A Parameters body from keyword arguments: references (dicts with 'reference'), codings, booleans,
    integers and strings get the matching value[x]."""
    parts = []
    for name, v in values.items():
        if isinstance(v, bool):
            parts.append({"name": name, "valueBoolean": v})
        elif isinstance(v, int):
            parts.append({"name": name, "valueInteger": v})
        elif isinstance(v, dict) and "reference" in v:
            parts.append({"name": name, "valueReference": v})
        elif isinstance(v, dict) and "code" in v:
            parts.append({"name": name, "valueCoding": v})
        elif isinstance(v, dict) and ("coding" in v or "text" in v):
            parts.append({"name": name, "valueCodeableConcept": v})
        else:
            parts.append({"name": name, "valueString": v})
    return params(*parts)


def ref(text: str) -> dict[str, str]:
    return {"reference": text}


def care_team(users: dict[str, Any], patient: str, *members: str, lead: str | None = None) -> str:
    """A care team for `patient` built through the API, as a service would: the registered GP's practice
    (gp.gary, whose practice has a care relationship with both demo patients) creates it and adds the
    professionals (Practitioner ids; `lead` makes one of them the care coordinator). Joining a team is what
    gives a professional their care relationship with the person. Returns the CareTeam id."""
    r = users["gary"].post("/fhir/CareTeam", json={
        "resourceType": "CareTeam", "status": "active", "name": f"Care team of {patient}",
        "subject": ref(f"Patient/{patient}"), "managingOrganization": [ref("Organization/org-gp-practice")]})
    assert r.status_code == 201, r.text
    team = r.json()["id"]
    for member in members:
        body = op_params(member=ref(f"Practitioner/{member}"), lead=member == lead)
        r = users["gary"].post(f"/fhir/CareTeam/{team}/$add-member", json=body)
        assert r.status_code == 200, r.text
    return team
