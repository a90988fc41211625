"""`sharedcare import PATH [--report FILE]`: load FHIR data from files, through the internal repository (like demo load).

PATH is a file or a folder (every `*.json` and `*.ndjson` under it, in name order):
- a `.json` file holding a transaction Bundle is loaded in one database transaction: all of it or none of it
  (a rejected bundle leaves nothing behind); a batch Bundle entry by entry; any other resource as one resource;
- a `.ndjson` file is one resource per line, each line on its own (a resource with an id is written with that
  id, as PUT; without one it is created), so one bad line rejects that line only.
Every write goes through the same validation, write rules, search indexing and ownership as the API; the
internal repository writes as the service itself (no access policy applies, as for demo load).

A progress bar (rich) on stderr when it is a terminal (service/commands/progress.py); then a summary, and each
rejected entry with its file, line or entry and the reason; `--report FILE` writes them as JSON too. Exit 0 when
everything loaded, 1 when anything was rejected, 2 when PATH holds nothing to load.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="load transaction Bundles (.json) or NDJSON files (.ndjson), a file or a "
                                      "folder, through the repository")
    p.add_argument("path", type=Path, help="a .json or .ndjson file, or a folder of them")
    p.add_argument("--report", type=Path, help="write the rejected entries to this file (JSON)")
    p.set_defaults(func=run)


@dataclass
class Outcome:
    written: Counter[str] = field(default_factory=Counter)  # "created" / "updated" -> count
    types: Counter[str] = field(default_factory=Counter)
    bundles: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, where: str, reason: str) -> None:
        self.rejected.append({"where": where, "reason": reason})


def files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix in (".json", ".ndjson") else []
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".json", ".ndjson"))


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from service.bootstrap import build_services
    from service.commands.progress import Bar
    from service.config import get_settings

    path: Path = args.path
    if not path.exists():
        print(f"error: {path} does not exist", file=sys.stderr)
        return 2
    files = files_under(path)
    if not files:
        print(f"error: no .json or .ndjson files at {path}", file=sys.stderr)
        return 2
    units = {f: (_lines(f) if f.suffix == ".ndjson" else 1) for f in files}
    services = build_services(get_settings())
    out = Outcome()
    console = Console(stderr=True)
    try:
        with Bar("importing", total=sum(units.values())) as bar:  # (on a terminal only)
            for f in files:
                bar.describe(f"importing {f.name}")
                if f.suffix == ".ndjson":
                    _ndjson(services, f, out, bar.advance)
                else:
                    _json_file(services, f, out)
                    bar.advance()
    finally:
        services.db.dispose()
    _summary(console, files, out)
    if args.report:
        args.report.write_text(json.dumps(out.rejected, indent=2))
        print(f"rejected entries written to {args.report}", file=sys.stderr)
    return 1 if out.rejected else 0


def _lines(f: Path) -> int:
    with f.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _write(services: Any, method: str, path: str, body: bytes) -> Any:
    """One request through the router as the service itself, in its own transaction (rolled back on refusal)."""
    from service.fhir.request import FhirRequest
    from service.interactions.router import allowed, route
    from service.repository import Repository

    req = FhirRequest(method=method, path=path, body=body, content_type="application/fhir+json",
                      headers={"content-type": "application/fhir+json", "prefer": "return=minimal"})
    r = route(req, services.operations)
    allowed(req, r)
    with services.db.write() as conn:
        return r.call(Repository.internal(services, conn))


def _count(out: Outcome, status: int, rtype: str) -> None:
    out.written["created" if status == 201 else "updated"] += 1
    out.types[rtype] += 1


def _one(services: Any, resource: Any, where: str, out: Outcome) -> None:
    from service.fhir.outcome import OperationOutcomeError

    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        out.reject(where, "not a FHIR resource (no resourceType)")
        return
    rtype, rid = resource["resourceType"], resource.get("id")
    try:
        if rid:
            resp = _write(services, "PUT", f"{rtype}/{rid}", orjson.dumps(resource))
        else:
            resp = _write(services, "POST", rtype, orjson.dumps(resource))
    except OperationOutcomeError as err:
        out.reject(where, f"{err.status} {err.diagnostics}")
        return
    if resp.status >= 400:
        out.reject(where, f"{resp.status} {_diagnostics(resp.body)}")
        return
    _count(out, resp.status, rtype)


def _ndjson(services: Any, f: Path, out: Outcome, advance: Any) -> None:
    with f.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                resource = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                out.reject(f"{f}:{number}", f"not JSON: {exc}")
            else:
                _one(services, resource, f"{f}:{number}", out)
            advance()


def _json_file(services: Any, f: Path, out: Outcome) -> None:
    from service.fhir.outcome import OperationOutcomeError

    try:
        raw = f.read_bytes()
        data = orjson.loads(raw)
    except (OSError, orjson.JSONDecodeError) as exc:
        out.reject(str(f), f"not readable JSON: {exc}")
        return
    if not (isinstance(data, dict) and data.get("resourceType") == "Bundle" and data.get("type") in ("transaction",
                                                                                                      "batch")):
        _one(services, data, str(f), out)
        return
    try:
        resp = _write(services, "POST", "", raw)  # (a transaction: one unit of work, all or nothing)
    except OperationOutcomeError as err:
        n = len(data.get("entry") or [])
        out.reject(str(f), f"bundle rejected, nothing of its {n} entries loaded: {err.status} {err.diagnostics}")
        return
    out.bundles += 1
    body = orjson.loads(resp.body or b"{}")
    for i, (sent, got) in enumerate(zip(data.get("entry") or [], body.get("entry") or [], strict=False)):
        status = int(str((got.get("response") or {}).get("status", "0")).split()[0] or 0)
        rtype = ((sent.get("resource") or {}).get("resourceType")) or str(
            (sent.get("request") or {}).get("url", "?")).split("/")[0].split("?")[0]
        if status >= 400 or status == 0:  # (batch entries fail one by one)
            oo = (got.get("response") or {}).get("outcome")
            out.reject(f"{f} entry[{i}]", f"{status} {_diagnostics(orjson.dumps(oo) if oo else None)}")
        elif status in (200, 201):
            _count(out, status, rtype)


def _diagnostics(body: bytes | None) -> str:
    try:
        data = orjson.loads(body or b"{}")
        return "; ".join(str(i.get("diagnostics", i.get("code", ""))) for i in data.get("issue", [])) or "refused"
    except (orjson.JSONDecodeError, AttributeError):
        return "refused"


def _summary(console: Any, files: list[Path], out: Outcome) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="import summary", show_header=False)
    table.add_row("files", str(len(files)))
    table.add_row("transaction/batch bundles loaded", str(out.bundles))
    table.add_row("resources created", str(out.written["created"]))
    table.add_row("resources updated", str(out.written["updated"]))
    table.add_row("rejected", str(len(out.rejected)))
    if out.types:
        table.add_row("by type", ", ".join(f"{t} {n}" for t, n in out.types.most_common()))
    console.print(table)
    for r in out.rejected[:50]:
        console.print(f"[red]rejected[/red] {escape(r['where'])}: {escape(r['reason'])}", highlight=False,
                      soft_wrap=True)
    if len(out.rejected) > 50:
        console.print(f"... and {len(out.rejected) - 50} more (--report FILE lists them all)")
