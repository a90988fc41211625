"""Placeholder search engine (replaced by the search issue): _id and identifier only, by scan."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import select

from service.fhir.outcome import OperationOutcomeError, bad_request
from service.interactions.request import FhirRequest, FhirResponse
from service.storage.tables import resource as R


class SearchEngine:
    def __init__(self, services: Any) -> None:
        self.services = services

    def index_listener(self, conn: Any, stored: Any, resource: dict[str, Any] | None) -> None:
        return None

    def capability_params(self, rtype: str) -> list[dict[str, Any]]:
        return [{"name": "_id", "type": "token"}, {"name": "identifier", "type": "token"}]

    def capability_includes(self, rtype: str) -> tuple[list[str], list[str]] | None:
        return None

    def find_ids(self, session: Any, rtype: str, criteria: str | list[tuple[str, str]]) -> list[str]:
        params = parse_qsl(criteria, keep_blank_values=True) if isinstance(criteria, str) else criteria
        rows = session.conn.execute(select(R.c.res_id, R.c.content).where(R.c.res_type == rtype,
                                                                          R.c.deleted.is_(False)))
        out = []
        for rid, content in rows:
            res = orjson.loads(content)
            if all(self._match(res, rid, k, v) for k, v in params):
                out.append(rid)
        return out

    def _match(self, res: dict[str, Any], rid: str, name: str, value: str) -> bool:
        if name == "_id":
            return rid in value.split(",")
        if name == "identifier":
            for ident in res.get("identifier", []) or []:
                sys_, _, val = value.rpartition("|")
                if ident.get("value") == val and (not value.count("|") or ident.get("system") == sys_):
                    return True
            return False
        raise bad_request(f"Search parameter {name!r} is not supported yet")

    def search(self, req: FhirRequest, session: Any, rtype: str | None) -> FhirResponse:
        if rtype is None:
            raise OperationOutcomeError(501, "not-supported", "System-wide search is not supported yet")
        ids = self.find_ids(session, rtype, req.params)
        found = session.store.read_many(session.conn, [(rtype, i) for i in ids])
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(found),
                  "entry": [{"fullUrl": f"{session.base}/{rtype}/{s.res_id}", "resource": orjson.Fragment(s.content),
                             "search": {"mode": "match"}} for s in found.values()]}
        return FhirResponse(200, orjson.dumps(bundle))

    def compartment(self, req: FhirRequest, session: Any, ctype: str, cid: str, rtype: str) -> FhirResponse:
        raise OperationOutcomeError(501, "not-supported", "Compartment search is not supported yet")
