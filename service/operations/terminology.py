"""Terminology operations over the ValueSets and CodeSystems this server holds (service/validation/terminology.py).

    GET|POST ValueSet/$expand?url=...            or ValueSet/[id]/$expand; POST may carry `valueSet`
             parameters: url, valueSet, filter (text in code or display), offset, count
    GET|POST ValueSet/$validate-code?url=...&system=...&code=...   (or coding / codeableConcept; display)
    GET|POST CodeSystem/$validate-code?url=...&code=...            (display)

$expand answers the ValueSet with an `expansion` (total, offset, contains: system, code, display);
$validate-code answers Parameters: `result` (boolean), `message` when false, `display` when known. A ValueSet or
CodeSystem that is missing, or that the caller may not see, is answered alike: 404 naming the URL.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from service.clock import fhir_instant, now_us
from service.fhir.outcome import bad_request, not_found
from service.fhir.request import FhirRequest, FhirResponse
from service.operations import Operation
from service.repository import Repository
from service.validation.terminology import code_in_system as _in_system
from service.validation.terminology import expand, fetchers
from service.workflows.params import Params

HL7 = "http://hl7.org/fhir/OperationDefinition/"


def _valueset(req: FhirRequest, repo: Repository, rid: str | None, params: Params) -> dict[str, Any]:
    fetch_vs, _ = fetchers(repo)
    if rid is not None:
        vs = fetch_vs(f"ValueSet/{rid}")
        if vs is None:
            raise not_found(f"ValueSet/{rid} is not known")
        return vs
    inline = params.resource("valueSet")
    if inline is not None:
        if inline.get("resourceType") != "ValueSet":
            raise bad_request("Parameter 'valueSet' must be a ValueSet", expression=("valueSet",))
        return inline
    url = params.string("url")
    if url is None:
        raise bad_request("Give the ValueSet: its canonical 'url', a 'valueSet' resource, or call "
                          "ValueSet/[id]/$expand", code="required", expression=("url",))
    vs = fetch_vs(url)
    if vs is None:
        raise not_found(f"No ValueSet with url {url!r} is held on this server")
    return vs


def _expansion(repo: Repository, vs: dict[str, Any]) -> dict[tuple[str, str], str | None]:
    fetch_vs, fetch_cs = fetchers(repo)
    return expand(vs, fetch_vs, fetch_cs)


def expand_op(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    params = Params(req)
    vs = _valueset(req, repo, rid, params)
    codes = _expansion(repo, vs)
    text = (params.string("filter") or "").lower()
    rows = sorted((s, c, d) for (s, c), d in codes.items()
                  if not text or text in c.lower() or (d and text in d.lower()))
    offset = params.integer("offset", 0) or 0
    count = params.integer("count", None)
    if offset < 0 or (count is not None and count < 0):
        raise bad_request("Parameters 'offset' and 'count' must not be negative")
    page = rows[offset:offset + count if count is not None else None]
    out = {k: v for k, v in vs.items() if k not in ("meta", "text", "expansion")}
    expansion: dict[str, Any] = {"identifier": f"urn:uuid:{uuid.uuid4()}", "timestamp": fhir_instant(now_us()),
                                 "total": len(rows), "offset": offset}
    if text:
        expansion["parameter"] = [{"name": "filter", "valueString": text}]
    if page:
        expansion["contains"] = [{"system": s, "code": c, **({"display": d} if d else {})} for s, c, d in page]
    out["expansion"] = expansion
    return FhirResponse(200, orjson.dumps(out))


def _result(ok: bool, message: str | None, display: str | None) -> FhirResponse:
    parts: list[dict[str, Any]] = [{"name": "result", "valueBoolean": ok}]
    if message:
        parts.append({"name": "message", "valueString": message})
    if display:
        parts.append({"name": "display", "valueString": display})
    return FhirResponse(200, orjson.dumps({"resourceType": "Parameters", "parameter": parts}))


def _codings(params: Params) -> list[tuple[str | None, str, str | None]]:
    code = params.string("code")
    if code is not None:
        return [(params.string("system"), code, params.string("display"))]
    coding = params.value("coding")
    if isinstance(coding, dict) and isinstance(coding.get("code"), str):
        return [(coding.get("system"), coding["code"], coding.get("display"))]
    cc = params.value("codeableConcept")
    if isinstance(cc, dict):
        found = [(c.get("system"), c["code"], c.get("display")) for c in cc.get("coding") or ()
                 if isinstance(c, dict) and isinstance(c.get("code"), str)]
        if found:
            return found
    raise bad_request("Give the code to check: 'code' (with 'system' for a ValueSet), 'coding' or "
                      "'codeableConcept'", code="required", expression=("code",))


def validate_code_valueset(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None) -> FhirResponse:
    params = Params(req)
    vs = _valueset(req, repo, rid, params)
    candidates = _codings(params)
    codes = _expansion(repo, vs)
    name = vs.get("url") or f"ValueSet/{rid}"
    for system, code, display in candidates:
        matches = [(s, d) for (s, c), d in codes.items() if c == code and (system is None or s == system)]
        if matches:
            known = matches[0][1]
            if display and known and display != known:
                return _result(False, f"The display {display!r} is not the display of {code!r} ({known!r})",
                               known)
            return _result(True, None, known)
    shown = ", ".join(f"{s + '|' if s else ''}{c}" for s, c, _ in candidates)
    return _result(False, f"{shown} is not in the ValueSet {name}", None)


def validate_code_codesystem(req: FhirRequest, repo: Repository, rtype: str | None, rid: str | None
                             ) -> FhirResponse:
    params = Params(req)
    _, fetch_cs = fetchers(repo)
    if rid is not None:
        cs = fetch_cs(f"CodeSystem/{rid}")
        name = f"CodeSystem/{rid}"
    else:
        url = params.string("url") or params.string("system")
        if url is None:
            raise bad_request("Give the CodeSystem's canonical 'url', or call CodeSystem/[id]/$validate-code",
                              code="required", expression=("url",))
        cs, name = fetch_cs(url), url
    if cs is None:
        raise not_found(f"No CodeSystem {name!r} is held on this server")
    system, code, display = _codings(params)[0]
    if system is not None and cs.get("url") and system != cs.get("url"):
        return _result(False, f"{system!r} is not the CodeSystem {cs.get('url')!r}", None)
    known = _in_system(cs, code)
    if known is False:
        return _result(False, f"{code!r} is not a code of {cs.get('url') or name}", None)
    if display and isinstance(known, str) and display != known:
        return _result(False, f"The display {display!r} is not the display of {code!r} ({known!r})", known)
    return _result(True, None, known if isinstance(known, str) else None)


OPERATIONS = (
    Operation("expand", "type", ("ValueSet",), ("GET", "POST"), expand_op, definition=HL7 + "ValueSet-expand"),
    Operation("expand", "instance", ("ValueSet",), ("GET", "POST"), expand_op, definition=HL7 + "ValueSet-expand"),
    Operation("validate-code", "type", ("ValueSet",), ("GET", "POST"), validate_code_valueset,
              definition=HL7 + "ValueSet-validate-code"),
    Operation("validate-code", "instance", ("ValueSet",), ("GET", "POST"), validate_code_valueset,
              definition=HL7 + "ValueSet-validate-code"),
    Operation("validate-code", "type", ("CodeSystem",), ("GET", "POST"), validate_code_codesystem,
              definition=HL7 + "CodeSystem-validate-code"),
    Operation("validate-code", "instance", ("CodeSystem",), ("GET", "POST"), validate_code_codesystem,
              definition=HL7 + "CodeSystem-validate-code"),
)
