"""The population the load harness seeds: N patients, each with a care team, a consent, a care plan and a
joint assessment in progress, plus Synthea-shaped clinical data (the Synthea bundles in
../shared/data/synthea-r4, read from there and re-pointed at each new patient).

Worker processes (each with its own services) seed `per_bundle` patients at a time:
- each patient's Patient, CareTeam, Consent, CarePlan and joint assessment go in through the real pipeline as
  the service's own transaction (`pipeline.handle`, internal system context, a transaction Bundle): write rules,
  validation, Provenance, ownership, care relationships and index rows exactly as the API makes them;
- their Synthea clinical resources (types with no write rules) are stored in bulk by COPY, with rows made by the
  store's and the indexer's own functions (canonical JSON, owners, index and compartment rows); the first
  patient's of each batch are validated as a write would be.

Who is whose (deterministic, by the patient's index i):
- every patient is registered with Meadow Lane Surgery (the GP practice, so the `gp-system` partner may
  write their record);
- nurse.nina is on the care team of every patient with i % 10 == 0 (her caseload), social.sam of i % 10 in
  (0, 5), coord.cara of the rest (so each care team has members);
- every tenth patient (i % 10 == 3) objects to sharing with the acute trust (an OPTOUT consent), the rest
  record an OPTIN consent for direct care.
"""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
SYNTHEA = next((p for p in (ROOT.parent / "shared" / "data" / "synthea-r4", Path("/work/shared/data/synthea-r4"))
                if p.exists()), ROOT.parent / "shared" / "data" / "synthea-r4")
NHS = "https://fhir.nhs.uk/Id/nhs-number"
JOINT = "https://sharedcare.example.org/fhir/Questionnaire/joint-assessment|1.1.0"
CLINICAL = ("Encounter", "Condition", "Observation", "MedicationRequest", "Immunization", "DiagnosticReport",
            "Procedure", "AllergyIntolerance")
GIVEN = ["Ann", "Bo", "Chidi", "Zoë", "Łucja", "Sam", "Priya", "Tom", "Aoife", "Kwame"]
FAMILY = ["Smith", "Jones", "Patel", "Nowak", "Okafor", "Williams", "Brown", "Taylor", "Khan", "O'Brien"]
CODES = {"consentscope": "http://terminology.hl7.org/CodeSystem/consentscope",
         "act": "http://terminology.hl7.org/CodeSystem/v3-ActCode"}


def nhs_number(i: int) -> str:
    """A valid (modulus 11), unique NHS number for patient i: the first base of its own block of ten whose
    check digit is not 10."""
    for k in range(10):
        base = f"{600_000_000 + i * 10 + k:09d}"
        check = 11 - sum(int(d) * (10 - n) for n, d in enumerate(base)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            return base + str(check)
    raise AssertionError("unreachable: one base in ten has a check digit below 10")


@lru_cache(maxsize=2)
def _templates(per_patient: int) -> list[list[dict[str, Any]]]:
    """Per Synthea bundle, its first `per_patient` clinical entries (types in CLINICAL, Bundle order)."""
    out = []
    for path in sorted(SYNTHEA.glob("patient-*.json")):
        entries = orjson.loads(path.read_bytes())["entry"]
        patient_url = next((e["fullUrl"] for e in entries if e["resource"]["resourceType"] == "Patient"), None)
        if patient_url is None:
            continue
        kept = [e for e in entries if e["resource"]["resourceType"] in CLINICAL][:per_patient]
        for e in kept:
            e["_patient_url"] = patient_url
        out.append(kept)
    if not out:
        raise RuntimeError(f"no Synthea bundles in {SYNTHEA}")
    return out


def _repoint(value: Any, urls: dict[str, str]) -> Any:
    """A copy with every reference re-pointed through `urls`; references to anything else (Synthea's
    organisations and practitioners, entries not kept) are left out."""
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str):
            return {**value, "reference": urls[ref]} if ref in urls else None
        out = {}
        for k, v in value.items():
            got = _repoint(v, urls)
            if got is not None:
                out[k] = got
        return out or None  # (an element left empty is left out: ele-1)
    if isinstance(value, list):
        return [x for x in (_repoint(v, urls) for v in value) if x is not None] or None
    return value


def _entry(resource: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    return {"fullUrl": url or f"urn:uuid:{uuid.uuid4()}", "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"]}}


def patient_entries(i: int, templates: list[list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Patient i: the transaction entries of the Patient, CareTeam, Consent, CarePlan and the joint assessment
    in progress; and its Synthea clinical resources as (type, fullUrl, resource) with the references still to
    re-point (`clinical_rows`)."""
    me = f"urn:uuid:{uuid.uuid4()}"
    subject = {"reference": me}
    gp = {"reference": "Organization/org-gp-practice"}
    members = []
    if i % 10 == 0:
        members.append(("prac-nina", "org-community-trust"))
    if i % 10 in (0, 5):
        members.append(("prac-sam", "org-council-asc"))
    if not members:
        members.append(("prac-cara", "org-community-trust"))
    out = [_entry({"resourceType": "Patient", "active": True, "identifier": [{"system": NHS, "value": nhs_number(i)}],
                   "name": [{"use": "official", "family": f"{FAMILY[i % 10]}{i}", "given": [GIVEN[(i // 10) % 10]]}],
                   "gender": "female" if i % 2 else "male",
                   "birthDate": f"{1930 + i % 70}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                   "address": [{"line": [f"{i % 300} High Street"], "city": "Westshire", "postalCode": "WS1 1AA"}],
                   "generalPractitioner": [gp], "managingOrganization": gp}, me),
           _entry({"resourceType": "CareTeam", "status": "active", "name": f"Care team {i}", "subject": subject,
                   "participant": [{"member": {"reference": f"Practitioner/{p}"},
                                    "onBehalfOf": {"reference": f"Organization/{o}"}} for p, o in members],
                   "managingOrganization": [{"reference": "Organization/org-community-trust"}]})]
    objects = i % 10 == 3
    provision: dict[str, Any] = {"type": "deny" if objects else "permit"}
    if objects:
        provision["actor"] = [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                                    "code": "IRCP"}]},
                               "reference": {"reference": "Organization/org-acute-trust"}}]
    out.append(_entry({"resourceType": "Consent", "status": "active",
                       "scope": {"coding": [{"system": CODES["consentscope"], "code": "patient-privacy"}]},
                       "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                       "patient": subject, "dateTime": "2026-09-01T10:00:00+01:00", "performer": [subject],
                       "sourceAttachment": {"title": "Recorded at the first visit"},
                       "policyRule": {"coding": [{"system": CODES["act"], "code": "OPTOUT" if objects else "OPTIN"}]},
                       "provision": provision}))
    out.append(_entry({"resourceType": "CarePlan", "status": "active", "intent": "plan", "title": "Staying well at home",
                       "subject": subject, "period": {"start": "2026-10-01"},
                       "author": {"reference": f"Practitioner/{members[0][0]}"},
                       "description": "Weekly visit; review in three months."}))
    out.append(_entry({"resourceType": "QuestionnaireResponse", "status": "in-progress", "questionnaire": JOINT,
                       "subject": subject, "source": subject, "authored": "2026-11-01T10:00:00Z",
                       "author": {"reference": f"Practitioner/{members[0][0]}"},
                       "item": [{"linkId": "about-me", "item": [
                           {"linkId": "about-me.what-matters", "answer": [{"valueString": "Staying at home"}]}]}]}))
    template = templates[i % len(templates)]
    clinical = [(e["resource"]["resourceType"], e["fullUrl"], e["resource"]) for e in template]
    return out, [template[0]["_patient_url"] if template else None, clinical]


def clinical_rows(pid: str, patient_url: str | None, clinical: list[tuple[str, str, dict[str, Any]]], base: str,
                  lu: int, validate: bool = False) -> tuple[dict[str, tuple[list[str], list[tuple[Any, ...]]]], int]:
    """Rows for one patient's Synthea clinical resources, made by the store's and the indexer's own functions
    (canonical JSON, owners, index and compartment rows): what the write path stores for a system write of
    these resources (no write rules apply to these types). Returns rows per table and the next lastUpdated."""
    from service import ownership
    from service.search import indexer
    from service.storage.store import canonical, new_id

    ids = [(t, url, new_id()) for t, url, _r in clinical]
    urls = {url: f"{t}/{rid}" for t, url, rid in ids}
    if patient_url:
        urls[patient_url] = f"Patient/{pid}"
    res_rows: list[tuple[Any, ...]] = []
    idx: dict[str, list[dict[str, Any]]] = {}
    for (rtype, _url, rid), (_t, _u, raw) in zip(ids, clinical, strict=True):
        res = _repoint(raw, urls) or {}
        res.pop("id", None)
        if validate:
            from service.fhir.validation import validate_resource

            validate_resource(res, expected_type=rtype)
        owners = ownership.owners(rtype, res, lambda keys: {})
        content = canonical(res, rid, 1, lu)
        indexer.merge(idx, indexer.index_rows(rtype, rid, orjson.loads(content), base, owners))
        res_rows.append((rtype, rid, 1, lu, False, content.decode(), owners[0] if owners else None,
                         ownership.owners_text(owners)))
        lu += 1
    cols = ["res_type", "res_id", "version", "last_updated", "deleted", "content", "patient_id", "owners"]
    tables = {"resource": (cols, res_rows),
              "resource_version": ([*cols, "method"], [(*r, "POST") for r in res_rows])}
    for name, rows in idx.items():
        if rows:
            c = list(dict.fromkeys(k for r in rows for k in r))
            tables[name] = (c, [tuple(r.get(k) for k in c) for r in rows])
    return tables, lu


def copy_rows(conn: Any, tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]]) -> None:
    """COPY the rows in (PostgreSQL), or insert them (SQLite), on the unit of work's connection."""
    from sqlalchemy import Table, insert

    from service.search import indexer
    from service.search.tables import INDEX_TABLES, sp_compartment
    from service.storage.tables import resource, resource_version

    def table_of(name: str) -> Table:  # (the indexer's own map of its row kinds to tables, when it has one)
        fixed = {"resource": resource, "resource_version": resource_version, "compartment": sp_compartment,
                 **getattr(indexer, "TABLES", INDEX_TABLES)}
        return fixed[name]

    def only_columns(name: str, cols: list[str], rows: list[tuple[Any, ...]]) -> tuple[list[str], list[tuple[Any, ...]]]:
        known = {c.name for c in table_of(name).columns}  # (as the indexer inserts them: the table's columns)
        keep = [i for i, c in enumerate(cols) if c in known]
        return [cols[i] for i in keep], [tuple(r[i] for i in keep) for r in rows]

    tables = {name: only_columns(name, cols, rows) for name, (cols, rows) in tables.items()}
    if conn.dialect.name == "postgresql":
        with conn.connection.driver_connection.cursor() as cur:
            for name, (cols, rows) in tables.items():
                with cur.copy(f"COPY {table_of(name).name} ({', '.join(cols)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
    else:
        for name, (cols, rows) in tables.items():
            conn.execute(insert(table_of(name)), [dict(zip(cols, r, strict=True)) for r in rows])


@dataclass
class Seeded:
    patients: list[str] = field(default_factory=list)        # Patient ids, index i at position i
    assessments: dict[str, str] = field(default_factory=dict)  # Patient id -> QuestionnaireResponse id
    resources: int = 0
    through_pipeline: int = 0   # (with their write rules, Provenance and care relationships)
    copied: int = 0
    seconds: float = 0.0
    workers: int = 1


_services: Any = None


def _init(url: str, var_dir: str) -> None:
    global _services

    from service.bootstrap import build_services
    from service.config import load_settings

    settings = load_settings(database_url=url, var_dir=Path(var_dir), keys_dir=Path(var_dir) / "keys",
                             audit_seal_seconds=0)
    _services = build_services(settings)


def _id_of(entry: dict[str, Any], rtype: str) -> str:
    """The id in a transaction response entry's location (`[base/]Type/id/_history/n`)."""
    parts = entry["response"]["location"].split("/")
    return parts[parts.index(rtype) + 1]


def _seed_batch(job: tuple[int, int, int]) -> tuple[list[tuple[int, str, str]], int, int]:
    """Patients [start, stop): their records as one transaction through the pipeline, then their clinical data
    by COPY; (index, Patient id, QuestionnaireResponse id) of each, and how many resources went each way."""
    from service.access.context import RequestContext
    from service.api.pipeline import handle
    from service.fhir.request import FhirRequest
    from service.storage.store import now_us

    start, stop, per_patient = job
    templates = _templates(per_patient)
    entries, first, clinical = [], [], []
    for i in range(start, stop):
        mine, rest = patient_entries(i, templates)
        first.append(len(entries))
        entries += mine
        clinical.append(rest)
    body = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    resp = handle(FhirRequest("POST", "", body=body, content_type="application/fhir+json",
                              headers={"prefer": "return=minimal"}), _services, RequestContext.system())
    if resp.status != 200:
        raise RuntimeError(f"seeding patients {start}-{stop}: {resp.status} {(resp.body or b'')[:1000]!r}")
    answered = orjson.loads(resp.body)["entry"]
    out = []
    tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
    lu = now_us()
    base = str(_services.settings.fhir_base)
    n_clinical = 0
    for n, i in enumerate(range(start, stop)):
        at = first[n]
        pid = _id_of(answered[at], "Patient")
        out.append((i, pid, _id_of(answered[at + 4], "QuestionnaireResponse")))
        patient_url, rows = clinical[n]
        more, lu = clinical_rows(pid, patient_url, rows, base, lu, validate=n == 0)
        n_clinical += len(rows)
        for name, (cols, rs) in more.items():
            tables.setdefault(name, (cols, []))[1].extend(rs)
    with _services.db.write() as conn:
        copy_rows(conn, tables)
    return out, len(entries), n_clinical


def seed(url: str, var_dir: Path, patients: int, per_patient: int = 12, per_bundle: int = 20,
         workers: int | None = None, log: Any = print) -> Seeded:
    """Seed `patients` patients (demo data must be loaded first) with `workers` processes."""
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    jobs = [(s, min(patients, s + per_bundle), per_patient) for s in range(0, patients, per_bundle)]
    got = Seeded(patients=[""] * patients, workers=workers)
    started = time.perf_counter()
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(url, str(var_dir))) as pool:
        for k, (rows, n, n_copied) in enumerate(pool.map(_seed_batch, jobs)):
            for i, pid, qr in rows:
                got.patients[i] = pid
                got.assessments[pid] = qr
            got.resources += n + n_copied
            got.through_pipeline += n
            got.copied += n_copied
            if k % 50 == 0 or k == len(jobs) - 1:
                log(f"   seeded {sum(1 for p in got.patients if p)}/{patients} patients, {got.resources} resources "
                    f"({time.perf_counter() - started:.0f}s)")
    got.seconds = time.perf_counter() - started
    return got
