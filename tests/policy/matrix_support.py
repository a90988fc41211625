"""Helpers for the policy matrix and the "one door" regressions: one record of each type for Pat and for
Paula (plus deleted ones), written by the administrator, and a way to compare two answers the way a
caller sees them (status, headers and body, with ids and times blanked)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from tests.policy.support import by, consent, observation

TYPES = ("Observation", "Task", "Provenance", "Flag", "DocumentReference", "QuestionnaireResponse", "Consent",
         "AuditEvent")
PATIENTS = {"pat": "pat-pat", "paula": "pat-paula"}
TAG = "urn:sharedcare-test:matrix"  # identifier system of the fixture records
HRESCH = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}
# the search parameter that links each type to its patient (Provenance: to the patient's assessment)
LINK = {"Observation": "subject", "Task": "patient", "Provenance": "target", "Flag": "subject",
        "DocumentReference": "subject", "QuestionnaireResponse": "subject", "Consent": "patient",
        "AuditEvent": "patient"}


def missing(rtype: str, n: int | str = 1) -> str:
    """An id of `rtype` that never existed (a different one for each `n`)."""
    return f"no-such-{rtype.lower()}-{n}"


def record(rtype: str, pid: str, label: str, qr: str | None = None) -> dict[str, Any]:
    """A record of `rtype` belonging to Patient/`pid` (a Provenance: about `qr`, the patient's assessment: a
    reference, or the fullUrl of a Bundle entry)."""
    ident = [{"system": TAG, "value": label}]
    subject = {"reference": f"Patient/{pid}"}
    if rtype == "Observation":
        return {**observation(pid, f"{label}: pulse 72"), "identifier": ident}
    if rtype == "Task":
        return {"resourceType": "Task", "status": "requested", "intent": "order", "for": subject,
                "description": f"{label}: home visit", "identifier": ident, "extension": by("org-gp-practice")}
    if rtype == "Provenance":
        target = qr if qr and qr.startswith("urn:") else f"QuestionnaireResponse/{qr}"
        return {"resourceType": "Provenance", "target": [{"reference": target}],
                "recorded": "2026-11-01T09:00:00Z", "agent": [{"who": {"reference": "Organization/org-gp-practice"}}]}
    if rtype == "Flag":
        return {"resourceType": "Flag", "status": "active", "code": {"text": f"{label}: key safe code 1234"},
                "subject": subject, "identifier": ident, "extension": by("org-gp-practice")}
    if rtype == "DocumentReference":
        data = base64.b64encode(f"{label}: discharge letter".encode()).decode()
        return {"resourceType": "DocumentReference", "status": "current", "subject": subject, "identifier": ident,
                "content": [{"attachment": {"contentType": "text/plain", "data": data}}],
                "extension": by("org-gp-practice")}
    if rtype == "QuestionnaireResponse":
        return {"resourceType": "QuestionnaireResponse", "status": "completed", "identifier": ident[0],
                "questionnaire": "http://example.org/Questionnaire/phq9", "subject": subject,
                "item": [{"linkId": "q1", "answer": [{"valueString": f"{label}: feeling low"}]}],
                "extension": by("org-gp-practice")}
    if rtype == "Consent":
        return consent(pid, {"type": "deny", "purpose": [HRESCH]}, scope="research", identifier=ident,
                       performer=[subject], sourceAttachment={"title": f"{label}: research opt-out form"})
    if rtype == "AuditEvent":
        return {"resourceType": "AuditEvent", "recorded": "2026-11-01T09:00:00Z",
                "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
                "agent": [{"who": {"reference": "Organization/org-gp-practice"}, "requestor": True}],
                "source": {"observer": {"reference": "Organization/org-gp-practice"}},
                "entity": [{"what": subject, "description": label}]}
    raise ValueError(rtype)


def neutral(rtype: str) -> dict[str, Any] | None:
    """A record of `rtype` about nobody (anyone with the scope may write it), or None where there is none."""
    ident = [{"system": TAG, "value": "neutral"}]
    org = {"reference": "Organization/org-gp-practice"}
    bodies: dict[str, dict[str, Any]] = {
        "Observation": {"resourceType": "Observation", "status": "final", "code": {"text": "room temperature"},
                        "valueString": "21C", "identifier": ident},
        "Task": {"resourceType": "Task", "status": "draft", "intent": "proposal", "identifier": ident},
        "Provenance": {"resourceType": "Provenance", "target": [org], "recorded": "2026-11-01T09:00:00Z",
                       "agent": [{"who": org}]},
        "Flag": {"resourceType": "Flag", "status": "active", "code": {"text": "car park closed"}, "subject": org,
                 "identifier": ident},
        "DocumentReference": {"resourceType": "DocumentReference", "status": "current", "identifier": ident,
                              "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}]},
        "QuestionnaireResponse": {"resourceType": "QuestionnaireResponse", "status": "in-progress",
                                  "questionnaire": "http://example.org/Questionnaire/phq9", "identifier": ident[0]},
    }
    return bodies.get(rtype)


@dataclass
class Fixture:
    rtype: str
    rid: str
    owner: str  # "pat" | "paula"
    deleted: bool
    anchor: str  # what it is linked to: "Patient/pat-pat", or "QuestionnaireResponse/<id>" for a Provenance
    body: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def url(self) -> str:
        return f"/fhir/{self.rtype}/{self.rid}"

    def __str__(self) -> str:
        return f"{self.owner}'s {'deleted ' if self.deleted else ''}{self.rtype}"


def build(admin: Any) -> list[Fixture]:
    """As the administrator, in one transaction: one live record of each type for each patient, and one more that
    a second transaction deletes (not of AuditEvent: the audit trail is append-only). The test of who reads what
    checks that the administrator reads every one (200, or 410 for the deleted ones)."""
    plan: list[tuple[str, str, bool, str]] = []  # (type, owner, deleted, fullUrl)
    entries = []
    for rtype in sorted(TYPES, key=lambda t: t != "QuestionnaireResponse"):  # a Provenance needs its target
        for owner, pid in PATIENTS.items():
            for deleted in (False, True) if rtype != "AuditEvent" else (False,):
                label = f"{rtype}-{owner}-{'deleted' if deleted else 'live'}"
                full_url = f"urn:uuid:00000000-0000-4000-8000-{len(plan):012d}"
                qr = next((u for t, o, d, u in plan if t == "QuestionnaireResponse" and o == owner and not d), None)
                entries.append({"fullUrl": full_url, "resource": record(rtype, pid, label, qr),
                                "request": {"method": "POST", "url": rtype}})
                plan.append((rtype, owner, deleted, full_url))
    r = admin.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200, r.text
    made = [e["resource"] for e in r.json()["entry"]]
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["201"] * len(plan)
    ids = {u: f"{m['resourceType']}/{m['id']}" for (_, _, _, u), m in zip(plan, made, strict=True)}
    out = []
    for (rtype, owner, deleted, full_url), body in zip(plan, made, strict=True):
        if rtype == "Provenance":
            anchor = body["target"][0]["reference"]
            assert anchor == ids[next(u for t, o, d, u in plan if t == "QuestionnaireResponse" and o == owner
                                      and not d)], anchor
        else:
            anchor = f"Patient/{PATIENTS[owner]}"
        out.append(Fixture(rtype, body["id"], owner, deleted, anchor, body))
    gone = [{"request": {"method": "DELETE", "url": f"{f.rtype}/{f.rid}"}} for f in out if f.deleted]
    r = admin.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": gone})
    assert r.status_code == 200 and all(e["response"]["status"][:3] == "204" for e in r.json()["entry"]), r.text
    return sorted(out, key=lambda f: TYPES.index(f.rtype))


# -- comparing answers ----------------------------------------------------------------------------------
_SKIP_HEADERS = ("date", "last-modified", "content-length", "request-id", "correlation", "timing", "time")
_TIME_KEYS = {"lastUpdated", "timestamp", "recorded", "lastModified"}
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?")
_LONG_NUMBER = re.compile(r"\d{13,}")  # microsecond clocks (paging snapshots)
_LOCATION_ID = re.compile(r"/fhir/[A-Za-z]+/([A-Za-z0-9\-.]{1,64})/_history/")


def _blank(text: str, ids: tuple[str, ...]) -> str:
    for i in sorted(ids, key=len, reverse=True):
        if i:
            text = text.replace(i, "<id>")
    text = _ISO.sub("<time>", text)
    return _LONG_NUMBER.sub("<n>", text)


def _walk(value: Any, ids: tuple[str, ...]) -> Any:
    if isinstance(value, dict):
        out = {k: _walk(v, ids) for k, v in value.items() if k not in _TIME_KEYS}
        if out.get("resourceType") == "Bundle":
            out.pop("id", None)  # a searchset's own id is new on every answer
        return out
    if isinstance(value, list):
        return [_walk(v, ids) for v in value]
    if isinstance(value, str):
        return _blank(value, ids)
    return value


def created_id(resp: Any) -> str | None:
    m = _LOCATION_ID.search(resp.headers.get("location", ""))
    return m.group(1) if m else None


def shape(resp: Any, *ids: str) -> tuple[int, dict[str, str], Any]:
    """What a caller can tell from an answer: status, headers (less dates, request ids and lengths) and body,
    with `ids` (and the id of anything it created) blanked, and times left out."""
    ids = tuple(ids) + tuple(x for x in (created_id(resp),) if x)
    if resp.headers.get("content-type", "").split(";")[0].endswith("json") and resp.content:
        body = resp.json()
        if isinstance(body, dict) and body.get("resourceType") not in (None, "OperationOutcome", "Bundle",
                                                                         "Parameters"):
            ids += (str(body.get("id")),)
        body = _walk(body, ids)
    else:
        body = _blank(resp.text, ids)
    headers = {k.lower(): _blank(v, ids) for k, v in resp.headers.items()
               if not any(s in k.lower() for s in _SKIP_HEADERS)}
    return resp.status_code, headers, body


def micros(when: str) -> int:
    dt = datetime.fromisoformat(when)
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def instant(us: int) -> str:
    """A FHIR instant with microseconds, for _since (the '+' escaped for a query string)."""
    return datetime.fromtimestamp(us // 1_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{us % 1_000_000:06d}Z"


def carries(url: str, times: set[int]) -> set[int]:
    """The times (microseconds) that a paging link carries, in the clear, as an ISO instant, or base64-encoded."""
    url = unquote(url)
    texts = [url]
    for part in re.split(r"[?&=.]", url):
        try:
            texts.append(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode("utf-8", "ignore"))
        except ValueError:
            continue
    found = set()
    for t in times:
        clock = datetime.fromtimestamp(t // 1_000_000, tz=UTC).strftime("%H:%M:%S") + f".{t % 1_000_000:06d}"
        if any(str(t) in x or clock in x for x in texts):
            found.add(t)
    return found


def entry_ids(bundle: dict[str, Any], rtype: str | None = None) -> list[str]:
    """Ids of a Bundle's resources (history entries without a resource: from the fullUrl)."""
    out = []
    for e in bundle.get("entry", []):
        res = e.get("resource")
        if res is not None:
            if res.get("resourceType") != "OperationOutcome" and (rtype is None or res["resourceType"] == rtype):
                out.append(res["id"])
        elif "fullUrl" in e:
            t, i = e["fullUrl"].rstrip("/").split("/")[-2:]
            if rtype is None or t == rtype:
                out.append(i)
    return out


def pages(caller: Any, url: str, limit: int = 400) -> list[dict[str, Any]]:
    """Every page of a search or history, following `next` links (at most `limit` pages)."""
    out = []
    while url and len(out) < limit:
        r = caller.get(url)
        assert r.status_code == 200, (url, r.text)
        out.append(r.json())
        nxt = [lk["url"] for lk in r.json().get("link", []) if lk["relation"] == "next"]
        url = nxt[0].split("http://testserver", 1)[-1] if nxt else ""
    return out

