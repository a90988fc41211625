"""Reading an operation's input: a Parameters body (POST) and/or URL parameters (GET or POST)."""

from __future__ import annotations

from typing import Any

from service.fhir.outcome import bad_request
from service.fhir.request import FhirRequest


class Params:
    def __init__(self, req: FhirRequest) -> None:
        self.parts: list[dict[str, Any]] = []
        if req.body:
            body = req.json_body()
            if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
                raise bad_request("The operation takes a Parameters resource as its body", code="structure")
            self.parts = [p for p in body.get("parameter") or () if isinstance(p, dict)]
        self.query = req.params

    def values(self, name: str) -> list[Any]:
        out: list[Any] = []
        for p in self.parts:
            if p.get("name") == name:
                out.extend(v for k, v in p.items() if k.startswith("value"))
        out.extend(v for k, v in self.query if k == name)
        return out

    def value(self, name: str) -> Any:
        found = self.values(name)
        return found[0] if found else None

    def resource(self, name: str) -> dict[str, Any] | None:
        for p in self.parts:
            if p.get("name") == name and isinstance(p.get("resource"), dict):
                return p["resource"]
        return None

    def string(self, name: str, *, required: bool = False) -> str | None:
        v = self.value(name)
        if v is None:
            if required:
                raise bad_request(f"Parameter '{name}' is required", code="required")
            return None
        if not isinstance(v, (str, int)) or isinstance(v, bool) or str(v).strip() == "":
            raise bad_request(f"Parameter '{name}' must be a non-blank string")
        return str(v).strip()

    def integer(self, name: str, default: int | None = None) -> int | None:
        v = self.value(name)
        if v is None:
            return default
        if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, str) and v.strip().lstrip("-").isdigit())):
            raise bad_request(f"Parameter '{name}' must be a whole number, not {v!r}")
        return int(v)

    def reference(self, name: str, rtype: str | None = None) -> str | None:
        v = self.value(name)
        if v is None:
            return None
        text = v.get("reference") if isinstance(v, dict) else v
        if not isinstance(text, str) or "/" not in text:
            raise bad_request(f"Parameter '{name}' must be a reference such as '{rtype or 'Type'}/id'")
        if rtype is not None and text.split("/", 1)[0] != rtype:
            raise bad_request(f"Parameter '{name}' must refer to a {rtype}, not {text!r}")
        return text
