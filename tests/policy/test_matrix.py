"""The access policy as a matrix: every demo identity x the types that hold a person's data (Observation, Task,
Provenance, Flag, DocumentReference, QuestionnaireResponse, Consent, AuditEvent) x every interaction.

The administrator writes one record of each type for Pat and one for Paula, and one more of each that it then
deletes. Whether a record is HIDDEN from a caller is pinned for the key cells (ward.wes sees nothing of either
person, patient.paula nothing of Pat's, a care relationship shows the person's records, ...: `expected_read`),
so the matrix cannot pass by hiding everything or by showing everything; for the other cells what the caller gets
from GET read decides (404, or the type-level 403 of IG leads for clinical types and of most callers for
AuditEvents: hidden). test_who_reads_what checks the pinned reads themselves. Then, for each identity:
- a hidden record (live or deleted) answers every interaction exactly like an id that never existed, and a
  visible deleted one answers 410 (test_hidden_answers_like_missing);
- conditional interactions only ever match what the caller may see (test_conditional_interactions);
- searches, includes, chains, _has, compartments, $everything and history show exactly what the caller may
  read, and their counts and paging links give nothing else away (test_searches_show_only_what_reads_show).
Failures name the identity, the record and the interaction. Both databases.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.policy.conftest import PEOPLE
from tests.policy.matrix_support import (
    LINK,
    PATIENTS,
    TAG,
    TYPES,
    Fixture,
    build,
    carries,
    entry_ids,
    instant,
    micros,
    missing,
    neutral,
    pages,
    shape,
)
from tests.workflows.support import about_me_extra, save_body

IDENTITIES = [*sorted(PEOPLE), "gp"]
WRITERS = {"nina", "sam", "cara", "gary", "wes", "gp"}  # professionals and the partner system: user/system *.cruds
RELATED = {"nina": {"pat"}, "sam": {"pat"}, "cara": {"pat"}, "gary": {"pat", "paula"}, "gp": {"pat", "paula"},
           "wes": set(), "pat": {"pat"}, "paula": {"paula"}, "carl": {"pat"}}  # whose records each may know of
NEUTRAL_TYPES = [t for t in TYPES if neutral(t) is not None]
PATCH = [{"op": "add", "path": "/language", "value": "en-GB"}]
FAMILY = {"pat": "Example", "paula": "Sample"}


class Cells:
    """Collects failing cells so one test reports all of them, each named identity / record / interaction."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failed: list[str] = []

    def check(self, ok: bool, where: str, detail: Any = "") -> None:
        if not ok:
            self.failed.append(f"{self.name} / {where}: {detail}")

    def same(self, got: Any, want: Any, where: str) -> None:
        """`got` and `want` are the shapes of two answers that must be indistinguishable."""
        self.check(got == want, where, f"got {_short(got)} but an id that never existed gets {_short(want)}")

    def done(self) -> None:
        assert not self.failed, f"{len(self.failed)} failing cells:\n" + "\n".join(self.failed[:150])


def _short(s: Any) -> str:
    if isinstance(s, tuple) and len(s) == 3:
        status, headers, body = s
        return f"{status} {body!s:.230} headers={sorted(headers)}"
    return f"{s!s:.300}"


def expected_read(name: str, f: Fixture) -> set[int] | None:
    """The pinned read answer for identity `name` and a fixture (None: not pinned, derived from the read)."""
    seen = {410} if f.deleted else {200}
    unseen = {403, 404} if f.rtype == "AuditEvent" else {404}
    if name == "ada":
        return seen
    if name == "iris":
        if f.rtype in ("Consent", "AuditEvent"):
            return seen
        return {403} if f.rtype == "Observation" else None
    if f.owner not in RELATED[name]:
        return unseen  # no relationship with the person: nothing of theirs, live or deleted
    if f.rtype == "AuditEvent":
        return {403, 404}  # the audit trail is for IG leads and administrators
    if name in WRITERS or f.rtype == "Observation":
        return seen  # a care relationship shows all of the person's record; a patient and a carer her obs
    return None


def visibility(who: dict[str, Any], name: str, fixtures: list[Fixture],
               cells: Cells | None = None) -> dict[str, bool]:
    """rid -> whether `name` may see the record: the pinned answer where there is one, else what GET read says.
    A deleted record counts as seen when its live twin (same type, same person) is. With `cells`, the reads are
    checked: pinned cells, and 410 for every deleted record the caller may see."""
    seen: dict[str, bool] = {}
    for f in sorted(fixtures, key=lambda f: f.deleted):  # live ones first: the deleted ones follow their twins
        want = expected_read(name, f)
        twin = next(g for g in fixtures if g.rtype == f.rtype and g.owner == f.owner and not g.deleted)
        got = who[name].get(f.url).status_code if cells is not None or (want is None and not f.deleted) else None
        if want is not None:
            seen[f.rid] = bool(want & {200, 410})
        else:
            seen[f.rid] = seen[twin.rid] if f.deleted else got == 200
        if cells is not None:
            cells.check(want is None or got in want, f"{f} read", f"{got}, expected {sorted(want or ())}")
            if f.deleted and seen[f.rid]:
                cells.check(got == 410, f"{f} read (a deleted record the caller could see)", f"{got}, expected 410")
    return seen


@pytest.fixture
def fixtures(who) -> list[Fixture]:  # type: ignore[no-untyped-def]
    return build(who["ada"])


def test_who_reads_what(who, fixtures):
    """The pinned reads, for every identity at once (the other tests take them as given); the administrator's
    answers (200, or 410 for the deleted ones) show that every fixture record is really there."""
    failed = []
    for name in IDENTITIES:
        cells = Cells(name)
        visibility(who, name, fixtures, cells)
        failed += cells.failed
    assert not failed, f"{len(failed)} failing cells:\n" + "\n".join(failed)


# ---------------------------------------------------------------------------------------- points 1 and 2


def _survives(admin: Any, f: Fixture, cells: Cells, after: str) -> None:
    r = admin.get(f.url)
    if f.deleted:
        cells.check(r.status_code == 410, f"{f} after {after}", f"admin now gets {r.status_code}, expected 410")
    else:
        ok = r.status_code == 200 and r.json()["meta"]["versionId"] == "1" and "language" not in r.json()
        cells.check(ok, f"{f} after {after}", f"changed: admin gets {r.status_code} {r.text:.200}")


@pytest.mark.parametrize("name", IDENTITIES)
def test_hidden_answers_like_missing(who, fixtures, name):
    me, admin = who[name], who["ada"]
    cells = Cells(name)
    seen = visibility(who, name, fixtures)

    def interactions(rtype: str, rid: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"/fhir/{rtype}/{rid}"
        out = {"read": me.get(url), "vread": me.get(f"{url}/_history/1"), "history": me.get(f"{url}/_history"),
               "PUT": me.put(url, json={**body, "id": rid}),
               "PATCH": me.patch(url, json=PATCH, headers={"Content-Type": "application/json-patch+json"}),
               "DELETE": me.delete(url)}
        if rtype == "QuestionnaireResponse":
            mine = save_body(1, about_me_extra())
            out["$save-answers"] = me.post(f"{url}/$save-answers", json=mine)
            out["$amend"] = me.post(f"{url}/$amend", json=save_body(1, about_me_extra(), reason="typo"))
            out["$complete"] = me.post(f"{url}/$complete")
            out["$generate-careplan"] = me.post(f"{url}/$generate-careplan")
        return out

    def body_of(f: Fixture) -> dict[str, Any]:  # the live record's body (a deleted one: its live twin's)
        return next(g.body for g in fixtures if g.rtype == f.rtype and g.owner == f.owner and not g.deleted)

    unknown: dict[tuple[str, str], dict[str, Any]] = {}  # (type, owner) -> what an unknown id gets
    for f in fixtures:
        if seen[f.rid]:
            continue
        key = (f.rtype, f.owner)
        if key not in unknown:
            rid = missing(f.rtype, f.owner)
            unknown[key] = {k: shape(r, rid) for k, r in interactions(f.rtype, rid, body_of(f)).items()}
        got = interactions(f.rtype, f.rid, body_of(f))
        for what, resp in got.items():
            cells.same(shape(resp, f.rid), unknown[key][what], f"{f} {what}")
        if name in WRITERS and f.rtype != "AuditEvent":  # pinned: what an unknown id gets (R4 http, our rules)
            want = {"read": 404, "vread": 404, "history": 404, "PUT": 405, "PATCH": 404, "DELETE": 204}
            for what, status in want.items():
                cells.check(got[what].status_code == status, f"{f} {what}", f"{got[what].status_code}, expected {status}")
            cells.check("etag" not in got["DELETE"].headers, f"{f} DELETE", "answered with an ETag")
        _survives(admin, f, cells, "PUT, PATCH, DELETE and operations by a caller it is hidden from")

    # the person's record as a whole: Patient/{id} and its operations, for a person hidden from the caller
    def person(pid: str) -> dict[str, Any]:
        return {"read": me.get(f"/fhir/Patient/{pid}"), "$everything": me.get(f"/fhir/Patient/{pid}/$everything"),
                "$access-log": me.get(f"/fhir/Patient/{pid}/$access-log"),
                "$start-assessment": me.post(f"/fhir/Patient/{pid}/$start-assessment"),
                "history": me.get(f"/fhir/Patient/{pid}/_history"),
                "compartment": me.get(f"/fhir/Patient/{pid}/Observation"),
                "compartment *": me.get(f"/fhir/Patient/{pid}/*")}
    nobody = {k: shape(r, "no-such-patient") for k, r in person("no-such-patient").items()}
    for owner, pid in PATIENTS.items():
        if me.get(f"/fhir/Patient/{pid}").status_code != 404:
            cells.check(owner in RELATED.get(name, {owner}), f"Patient/{pid} read", "visible without a relationship")
            continue
        for what, resp in person(pid).items():
            cells.same(shape(resp, pid), nobody[what], f"Patient/{pid} {what}")
        if name == "wes":
            cells.check(me.get(f"/fhir/Patient/{pid}/$everything").status_code == 404, f"{pid} $everything", "not 404")
    cells.done()


# ---------------------------------------------------------------------------------------- point 3


def _count_tagged(admin: Any, rtype: str, value: str) -> int:
    return admin.get(f"/fhir/{rtype}?identifier={TAG}|{value}&_summary=count").json()["total"]


@pytest.mark.parametrize("name", IDENTITIES)
def test_conditional_interactions(who, fixtures, name):
    me, admin = who[name], who["ada"]
    cells = Cells(name)
    seen = visibility(who, name, fixtures)
    live = [f for f in fixtures if not f.deleted]

    def body_for(rtype: str) -> dict[str, Any]:
        """What the caller sends: a record about nobody, or (Consent, AuditEvent: they always name a person)
        one about Pat, whoever the record it is conditional on belongs to."""
        b = neutral(rtype)
        if b is not None:
            return b
        pats = next(g for g in live if g.rtype == rtype and g.owner == "pat")
        return {k: v for k, v in pats.body.items() if k not in ("id", "meta")}

    def conditional(rtype: str, rid: str) -> dict[str, Any]:
        query = f"_id={rid}"
        tx_obs = {**body_for("Observation"), "identifier": [{"system": TAG, "value": "tx"}],
                  "focus": [{"reference": f"{rtype}?{query}"}]}
        tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:6a0bd1e8-4a57-4b43-9b0c-7c7b0a0e0001", "resource": tx_obs,
             "request": {"method": "POST", "url": "Observation"}}]}
        return {"If-None-Exist": me.post(f"/fhir/{rtype}", json=body_for(rtype), headers={"If-None-Exist": query}),
                "conditional update": me.put(f"/fhir/{rtype}?{query}", json=body_for(rtype)),
                "conditional delete": me.delete(f"/fhir/{rtype}?{query}"),
                "transaction with a conditional reference": me.post("/fhir", json=tx)}

    for rtype in TYPES:
        stored_before = _count_tagged(admin, "Observation", "tx")
        unknown = {k: shape(r, missing(rtype)) for k, r in conditional(rtype, missing(rtype)).items()}
        for f in (g for g in live if g.rtype == rtype and not seen[g.rid]):
            got = conditional(rtype, f.rid)
            for what, resp in got.items():
                cells.same(shape(resp, f.rid), unknown[what], f"{f} {what} (its only match is hidden)")
            if name in WRITERS and rtype in NEUTRAL_TYPES:
                for what, status in (("If-None-Exist", 201), ("conditional update", 201), ("conditional delete", 204),
                                     ("transaction with a conditional reference", 412)):
                    cells.check(got[what].status_code == status, f"{f} {what}",
                                f"{got[what].status_code}, expected {status}: {got[what].text:.200}")
            said = got["If-None-Exist"].json() if got["If-None-Exist"].content else {}
            if said.get("resourceType") == "OperationOutcome":
                cells.check(not re.search(r"count|match(ed|es)? \d", str(said)), f"{f} If-None-Exist",
                            f"tells a number of matches: {said}")
            _survives(admin, f, cells, "conditional interactions whose only match it was")
        cells.check(_count_tagged(admin, "Observation", "tx") == stored_before, f"{rtype} transaction",
                    "stored an Observation although its conditional reference matched nothing the caller may see")
        # one visible and one hidden match make one match, never 412 (last: it may change the visible one)
        pair = [g for g in live if g.rtype == rtype]
        visible = [g.rid for g in pair if seen[g.rid]]
        query = "_id=" + ",".join(g.rid for g in pair)
        answers = {"If-None-Exist": me.post(f"/fhir/{rtype}", json=body_for(rtype), headers={"If-None-Exist": query}),
                   "conditional update": me.put(f"/fhir/{rtype}?{query}", json=body_for(rtype)),
                   "conditional delete": me.delete(f"/fhir/{rtype}?{query}")}
        for what, r in answers.items():
            where = f"{rtype} {what} matching Pat's and Paula's ({len(visible)} of them visible)"
            if rtype == "Observation" and name in ("nina", "gary"):  # pinned: nina sees Pat's only; gary both
                want = {"If-None-Exist": 200, "conditional update": 200, "conditional delete": 204}[what]
                want = want if name == "nina" else 412
                cells.check(r.status_code == want, where, f"{r.status_code}, expected {want}: {r.text:.200}")
            elif len(visible) == 1:
                cells.check(r.status_code != 412, where, f"412: {r.text:.200}")
                if r.status_code == 200:
                    cells.check(r.json()["id"] == visible[0], where, "answered with the hidden one")
            elif len(visible) == 2 and r.status_code not in (403, 405):
                cells.check(r.status_code == 412, where, f"{r.status_code}, expected 412")
        for f in pair:
            if not seen[f.rid]:
                _survives(admin, f, cells, "conditional interactions matching it and a visible one")
    cells.done()


# ---------------------------------------------------------------------------------------- point 4


def _search(me: Any, url: str) -> tuple[int, list[str], int | None]:
    """Status, every id over all pages (fixtures and anything else), and the first page's total."""
    r = me.get(url)
    if r.status_code != 200:
        return r.status_code, [], None
    found, total = entry_ids(r.json()), r.json().get("total")
    nxt = [lk["url"] for lk in r.json().get("link", []) if lk["relation"] == "next"]
    for page in pages(me, nxt[0].split("http://testserver", 1)[-1]) if nxt else []:
        found += entry_ids(page)
    return 200, found, total


@pytest.mark.parametrize("name", IDENTITIES)
def test_searches_show_only_what_reads_show(who, fixtures, name):
    me, admin = who[name], who["ada"]
    cells = Cells(name)
    since = instant(min(micros(f.body["meta"]["lastUpdated"]) for f in fixtures) - 1)
    # system history first, one version a page, while little but our records is newer than `since`
    system_history = pages(me, f"/fhir/_history?_since={since}&_count=1")
    seen = visibility(who, name, fixtures)
    ours = {f.rid: f for f in fixtures}
    live = [f for f in fixtures if not f.deleted]
    may = {f.rid for f in live if seen[f.rid]}  # live records the caller may see
    may_history = {f.rid for f in fixtures if seen[f.rid]}
    hidden_times: set[int] = set()
    for f in fixtures:
        if not seen[f.rid]:
            for e in admin.get(f"{f.url}/_history").json().get("entry", []):
                hidden_times.add(micros(e["response"]["lastModified"]))
    readable = {pid: me.get(f"/fhir/Patient/{pid}").status_code == 200 for pid in PATIENTS.values()}
    everything = {pid: _search(me, f"/fhir/Patient/{pid}/$everything?_count=100") for pid, ok in readable.items() if ok}
    anchors_ok = {f"Patient/{pid}": ok for pid, ok in readable.items()}
    anchors_ok.update({f"QuestionnaireResponse/{f.rid}": seen[f.rid] for f in live if f.rtype == "QuestionnaireResponse"})

    # history: system and type level, paged; hidden versions never appear, nor in the paging links
    def history(got: list[dict[str, Any]], where: str) -> set[str]:
        found = {i for page in got for i in entry_ids(page)}
        hidden = {str(ours[i]) for i in found & (set(ours) - may_history)}
        cells.check(not hidden, where, f"shows {sorted(hidden)}")
        empty = [i + 1 for i, page in enumerate(got) if not page.get("entry") and (i > 0 or any(
            lk["relation"] == "next" for lk in page.get("link", [])))]
        cells.check(not empty, where, f"pages {empty} of {len(got)} are empty, yet offered or offering a next page")
        leaky = [i + 1 for i, page in enumerate(got)
                 if any(carries(lk["url"], hidden_times) for lk in page.get("link", []))]
        cells.check(not leaky, where, f"the links of pages {leaky} of {len(got)} carry a hidden version's time "
                    f"(e.g. {[lk['url'] for lk in got[leaky[0] - 1]['link'] if lk['relation'] == 'next'] if leaky else ''})")
        return found & set(ours)

    history(system_history, "system history")
    for rtype in TYPES:
        if me.get(f"/fhir/{rtype}/_history?_count=1").status_code == 200:
            per_page = 1000 if rtype == "AuditEvent" else 1  # (every request adds AuditEvents)
            got = history(pages(me, f"/fhir/{rtype}/_history?_since={since}&_count={per_page}"), f"{rtype} history")
            want = {f.rid for f in fixtures if f.rtype == rtype} & may_history
            cells.check(got == want, f"{rtype} history", f"shows {len(got)} of ours, expected {len(want)}")

    for rtype in TYPES:
        mine = {f.rid for f in live if f.rtype == rtype} & may
        every = ",".join(f.rid for f in fixtures if f.rtype == rtype)
        link = LINK[rtype]

        def expect(where: str, result: tuple[int, list[str], int | None], want: set[str], exact: bool = True,
                   rtype: str = rtype, counted: bool = False, allowed: set[str] | None = None) -> None:
            """Of our records of `rtype`, the answer shows `want` (all of them when `exact`) and nothing beyond
            `allowed` (default: `want`)."""
            status, found, total = result
            if status != 200:
                cells.check(status == 403 and not want, f"{rtype} {where}", f"{status} (expected 200 showing {want})")
                return
            got = {i for i in found if i in ours and ours[i].rtype == rtype}
            cells.check(not counted or total == len(found), f"{rtype} {where}", f"total {total} for {len(found)} entries")
            extra = got - (want if allowed is None else allowed)
            cells.check(not extra, f"{rtype} {where}", f"shows {sorted(str(ours[i]) for i in extra)} (hidden from "
                        f"the caller: {sorted(str(ours[i]) for i in extra - may)})")
            cells.check(not exact or want <= got, f"{rtype} {where}", f"shows {len(got & want)} of the {len(want)} "
                        "it should")

        # totals: by id, and over the whole type (against reading each record one by one)
        r = me.get(f"/fhir/{rtype}?_id={every}&_summary=count")
        cells.check(r.status_code == 403 and not mine or r.status_code == 200 and r.json()["total"] == len(mine),
                    f"{rtype} _summary=count by _id", f"{r.status_code} {r.text:.150}, expected total {len(mine)}")
        expect("search by _id", _search(me, f"/fhir/{rtype}?_id={every}&_count=1&_total=accurate"), mine, counted=True)
        if rtype != "AuditEvent":
            everyone = {i for page in pages(admin, f"/fhir/{rtype}?_count=1000") for i in entry_ids(page, rtype)}
            readable_all = sum(1 for i in everyone if me.get(f"/fhir/{rtype}/{i}").status_code == 200)
            r = me.get(f"/fhir/{rtype}?_summary=count")
            cells.check(r.status_code == 403 and not readable_all or r.status_code == 200
                        and r.json()["total"] == readable_all, f"{rtype} _summary=count",
                        f"{r.status_code} {r.text:.150}, but it may read {readable_all} of {len(everyone)}")
        # _include: the linked records, only those the caller may see
        r = me.get(f"/fhir/{rtype}?_id={every}&_include={rtype}:{link}")
        if r.status_code == 200:
            atype = "QuestionnaireResponse" if rtype == "Provenance" else "Patient"
            found = entry_ids(r.json())
            linked = {ours[i].anchor for i in found if i in ours and ours[i].rtype == rtype}
            want_anchor = {a.split("/")[1] for a in linked if anchors_ok.get(a)}
            got_anchor = {i for i in entry_ids(r.json(), atype) if f"{atype}/{i}" in anchors_ok}
            cells.check(got_anchor == want_anchor, f"{rtype} _include={rtype}:{link}",
                        f"includes {sorted(got_anchor)}, expected {sorted(want_anchor)}")
        # _revinclude, from the people (or, for Provenance, from their assessments)
        if rtype == "Provenance":
            qrs = [f for f in live if f.rtype == "QuestionnaireResponse"]
            base = f"/fhir/QuestionnaireResponse?_id={','.join(q.rid for q in qrs)}"
            r2 = me.get("/fhir/Organization?_id=org-gp-practice&_revinclude=Provenance:agent")
            expect("Organization?_revinclude=Provenance:agent", (r2.status_code, entry_ids(r2.json()), None), mine)
        else:
            base = "/fhir/Patient?_id=pat-pat,pat-paula"
        r = me.get(f"{base}&_revinclude={rtype}:{link}")
        if rtype == "AuditEvent":  # the audit trail is not included in searches of the record: said, never silent
            strict = me.get(f"{base}&_revinclude={rtype}:{link}", headers={"Prefer": "handling=strict"})
            cells.check(strict.status_code in (400, 403) and not set(entry_ids(r.json() if r.status_code == 200
                                                                               else {}, rtype)),
                        f"_revinclude={rtype}:{link}", f"strict {strict.status_code}, lenient {r.status_code}")
        elif r.status_code == 200:
            found = entry_ids(r.json())
            want = {i for i in mine if ours[i].anchor.split("/")[1] in found}
            expect(f"_revinclude={rtype}:{link}", (200, found, None), want)
        else:
            expect(f"_revinclude={rtype}:{link}", (r.status_code, [], None), set())
        for owner, pid in PATIENTS.items():
            theirs = {i for i in mine if ours[i].owner == owner}
            # a chain through the person (for Provenance: through the assessment, to the person)
            chain = f"target:QuestionnaireResponse.subject=Patient/{pid}" if rtype == "Provenance" else \
                f"{link}:Patient.family={FAMILY[owner]}"
            through = readable[pid] and all(anchors_ok[ours[i].anchor] for i in theirs)
            expect(f"?{chain}", _search(me, f"/fhir/{rtype}?{chain}"), theirs, exact=through)
            # _has: the person (or assessment) is found by a record of theirs only if that record may be seen
            for f in (g for g in live if g.rtype == rtype and g.owner == owner and rtype != "AuditEvent"):
                atype, aid = f.anchor.split("/")
                r = me.get(f"/fhir/{atype}?_has:{rtype}:{link}:_id={f.rid}")
                got_has = set(entry_ids(r.json(), atype)) if r.status_code == 200 else set()
                want_has = {aid} if seen[f.rid] and anchors_ok[f.anchor] else set()
                cells.check(got_has == want_has and r.status_code in (200, 403), f"{atype}?_has:{rtype} ({f})",
                            f"{r.status_code} finds {sorted(got_has)}, expected {sorted(want_has)}")
            # the person's compartment and $everything
            if rtype != "Task":  # (Task is not in the R4 Patient compartment: 400)
                expect(f"Patient/{pid}/{rtype}", _search(me, f"/fhir/Patient/{pid}/{rtype}"), theirs,
                       exact=readable[pid] and rtype != "Provenance")
            if readable[pid]:
                expect(f"Patient/{pid}/$everything", everything[pid], theirs, allowed=mine,  # (and what theirs cite)
                       exact=rtype not in ("Task", "Provenance", "AuditEvent"))
    cells.done()
