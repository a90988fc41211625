"""Pre-filling a new joint assessment from what the record already holds ("tell it once").

Driven by the form: every item with the prefill-source extension names where its answer comes from
(fhir_profiles.questionnaire_validation.PREFILL_SOURCES): the Patient (name, birth date, gender, NHS
number, address, phone, registered GP practice, language), and one instance of a repeating group per
RelatedPerson of the patient (name, relationship, phone). Then every other unit is taken from the
person's latest finished (completed or amended) joint assessment, if any: health needs, Care Act
outcomes, carers and the rest, for the assessors to confirm or change. The record wins over the old
assessment where both have an answer.

Only what the caller may see is used (guard.can_see; a type the caller may not read is skipped), and
only answers valid under the form's current version are kept: units that fail validation (for
example an answer whose enableWhen is not met, such as the preferred language when no interpreter
is needed) are dropped, so a pre-filled response is always a valid in-progress response.
"""

from __future__ import annotations

from typing import Any

from fhir_profiles.questionnaire_validation import prefill_sources, questionnaire_index, validate_response
from service.fhir.outcome import OperationOutcomeError
from service.repository import Repository
from service.workflows import answers, forms, lookup

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"


def _name_text(names: Any) -> str | None:
    if not isinstance(names, list) or not names:
        return None
    name = next((n for n in names if isinstance(n, dict) and n.get("use") == "official"), names[0])
    if not isinstance(name, dict):
        return None
    if name.get("text"):
        return str(name["text"])
    parts = [*(name.get("prefix") or ()), *(name.get("given") or ()), name.get("family") or ""]
    text = " ".join(p for p in parts if p).strip()
    return text or None


def _phone(resource: dict[str, Any]) -> str | None:
    return next((t.get("value") for t in resource.get("telecom") or ()
                 if isinstance(t, dict) and t.get("system") == "phone" and t.get("value")), None)


def _address(patient: dict[str, Any]) -> str | None:
    addresses = [a for a in patient.get("address") or () if isinstance(a, dict)]
    if not addresses:
        return None
    home = next((a for a in addresses if a.get("use") == "home"), addresses[0])
    if home.get("text"):
        return str(home["text"])
    parts = [*(home.get("line") or ()), home.get("city"), home.get("district"), home.get("postalCode")]
    return ", ".join(p for p in parts if p) or None


def _string(v: str | None) -> list[dict[str, Any]]:
    return [{"valueString": v}] if v else []


def _codings_for(q_item: dict[str, Any], codings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Codings acceptable to a choice item: those matching an answerOption (open-choice takes any)."""
    options = [o["valueCoding"] for o in q_item.get("answerOption") or () if "valueCoding" in o]
    out = []
    for c in codings:
        match = next((o for o in options if o.get("code") == c.get("code")
                      and (not o.get("system") or o.get("system") == c.get("system"))), None)
        if match is not None:
            out.append({"valueCoding": match})
        elif q_item.get("type") == "open-choice" and c.get("code"):
            out.append({"valueCoding": {k: c[k] for k in ("system", "code", "display") if k in c}})
    if not q_item.get("repeats"):
        out = out[:1]
    return out


class _Record:
    """What the caller may see of the patient's record, read lazily."""

    def __init__(self, repo: Repository, patient: dict[str, Any]) -> None:
        self.repo = repo
        self.patient = patient
        self.ref = f"Patient/{patient['id']}"
        self._related: list[dict[str, Any]] | None = None

    def related(self) -> list[dict[str, Any]]:
        if self._related is None:
            try:
                found = lookup.find(self.repo, "RelatedPerson", [("patient", self.ref)],
                                    lambda r: lookup.ref(r, "patient") == self.ref and r.get("active", True))
                self._related = [s.json() for s in sorted(found, key=lambda s: s.res_id)]
            except OperationOutcomeError:
                self._related = []
        return self._related

    def gp(self) -> list[dict[str, Any]]:
        refs = [g for g in self.patient.get("generalPractitioner") or () if isinstance(g, dict) and g.get("reference")]
        if not refs:
            return []
        value = {"reference": refs[0]["reference"]}
        rtype, _, rid = refs[0]["reference"].partition("/")
        org = self.repo.get(rtype, rid)
        if org is not None:
            name = org.json().get("name") or _name_text(org.json().get("name"))
            if isinstance(name, str):
                value["display"] = name
        return [{"valueReference": value}]

    def patient_answers(self, key: str, q_item: dict[str, Any]) -> list[dict[str, Any]]:
        p = self.patient
        if key == "Patient.name":
            return _string(_name_text(p.get("name")))
        if key == "Patient.birthDate":
            return [{"valueDate": p["birthDate"]}] if p.get("birthDate") else []
        if key == "Patient.gender":
            return _codings_for(q_item, [{"system": "http://hl7.org/fhir/administrative-gender",
                                          "code": p["gender"]}]) if p.get("gender") else []
        if key == "Patient.identifier[nhs-number]":
            return _string(next((i.get("value") for i in p.get("identifier") or ()
                                 if isinstance(i, dict) and i.get("system") == NHS_NUMBER), None))
        if key == "Patient.address":
            return _string(_address(p))
        if key == "Patient.telecom[phone]":
            return _string(_phone(p))
        if key == "Patient.generalPractitioner":
            return self.gp()
        if key == "Patient.communication.language":
            comms = [c for c in p.get("communication") or () if isinstance(c, dict)]
            comm = next((c for c in comms if c.get("preferred")), comms[0] if comms else None)
            lang = (comm or {}).get("language") or {}
            text = lang.get("text") or next((c.get("display") or c.get("code") for c in lang.get("coding") or ()), None)
            return _string(text)
        return []


def _related_answers(key: str, q_item: dict[str, Any], rp: dict[str, Any]) -> list[dict[str, Any]]:
    if key == "RelatedPerson.name":
        return _string(_name_text(rp.get("name")))
    if key == "RelatedPerson.telecom[phone]":
        return _string(_phone(rp))
    if key == "RelatedPerson.relationship":
        codings = [c for cc in rp.get("relationship") or () for c in (cc.get("coding") or ()) if isinstance(c, dict)]
        return _codings_for(q_item, codings)
    return []


def from_record(repo: Repository, q: dict[str, Any], patient: dict[str, Any]) -> tuple[answers.Units, dict[str, str]]:
    """Units pre-filled from the Patient and their RelatedPersons, and unit -> source reference."""
    record = _Record(repo, patient)
    sources = prefill_sources(q)
    index = questionnaire_index(q)
    unit_map = answers.unit_of(q)
    units: answers.Units = {}
    origin: dict[str, str] = {}
    for lid, key in sources.items():
        if unit_map.get(lid) != lid:
            continue  # children of a repeating group are filled with their group
        item = index[lid]
        if key == "RelatedPerson" and item.get("type") == "group":
            instances = []
            for rp in record.related():
                kids = []
                for child in item.get("item") or ():
                    ckey = sources.get(child["linkId"])
                    vals = _related_answers(ckey, child, rp) if ckey else []
                    if vals:
                        kids.append({"linkId": child["linkId"], "answer": vals})
                if kids:
                    instances.append({"linkId": lid, "item": kids})
            if instances:
                units[lid] = instances
                origin[lid] = record.ref
        elif key.startswith("Patient."):
            vals = record.patient_answers(key, item)
            if vals:
                units[lid] = [{"linkId": lid, "answer": vals}]
                origin[lid] = record.ref
    return units, origin


def from_previous(repo: Repository, q: dict[str, Any], patient_ref: str) -> tuple[answers.Units, dict[str, str]]:
    """Units of the patient's latest finished joint assessment (authorship removed)."""
    if not repo.may("search-type", "QuestionnaireResponse"):
        return {}, {}
    found = lookup.find(repo, "QuestionnaireResponse", [("subject", patient_ref), ("status", "completed,amended")],
                        lambda r: lookup.ref(r, "subject") == patient_ref and forms.is_joint(r.get("questionnaire"))
                        and r.get("status") in ("completed", "amended"))
    if not found:
        return {}, {}
    latest = max(found, key=lambda s: (s.json().get("authored") or "", s.last_updated))
    previous = latest.json()
    old_q = forms.resolve(repo, previous["questionnaire"])
    units = {u: [answers.strip_author(i) for i in items] for u, items in answers.collect(old_q, previous).items()}
    source = f"QuestionnaireResponse/{latest.res_id}/_history/{latest.version}"
    return units, {u: source for u in units}


def prefill(repo: Repository, q: dict[str, Any], patient: dict[str, Any]) -> tuple[answers.Units, dict[str, str]]:
    """The pre-filled units (valid under `q`) and where each came from."""
    units, origin = from_previous(repo, q, f"Patient/{patient['id']}")
    known = set(answers.unit_of(q).values())
    units = {u: v for u, v in units.items() if u in known}
    origin = {u: origin[u] for u in units}
    rec_units, rec_origin = from_record(repo, q, patient)
    units.update(rec_units)
    origin.update(rec_origin)
    unit_map = answers.unit_of(q)
    for _ in range(10):  # drop invalid units until the rest is valid (dependencies may cascade)
        probe = {"resourceType": "QuestionnaireResponse", "status": "in-progress", "item": answers.build(q, units)}
        bad = {unit_map.get(i.link_id or "") for i in validate_response(q, probe, completing=False)
               if i.severity == "error"}
        bad.discard(None)
        if not bad:
            break
        if not bad & set(units):
            units, origin = {}, {}
            break
        for u in bad:
            units.pop(u, None)  # type: ignore[arg-type]
            origin.pop(u, None)  # type: ignore[arg-type]
    return units, origin
