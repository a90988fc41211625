"""Local references must resolve on write (https://hl7.org/fhir/R4/references.html).

A Reference.reference naming a resource on this server (`Type/id`, `Type/id/_history/n`, or the same under the
server's own base URL) must name a resource that exists here (not deleted) when the write is stored: else 422
naming the element path. Not checked: contained (`#id`), `urn:` and other servers' URLs, conditional
references (a transaction resolves those first), logical references (identifier only), AuditEvents (kept
in the audit log, service/audit/trail.py), and the entries of a stored Bundle (a document or collection, whose
entries refer to each other by their fullUrls, not to this server).

A transaction resolves references among its own entries first: the check of every entry waits until all of
them are written (the repository's `defer_references` / `check_deferred_references`), so entries may come in any
order.

Hidden resources: existence is checked regardless of who may see the resource, and a reference to a hidden
resource is answered exactly as one to a visible resource: it resolves. A reference check therefore never
answers "exists but hidden" differently from "exists"; a 422 says only that nothing with that id exists here.
Ids are server-assigned random UUIDs, so probing for ids by guessing is hopeless, and whether the write itself
is allowed (a resource naming a person the caller has no care relationship with) is the policy's decision,
made before this check and answered as for any other write.

The switch for bulk loads that arrive out of order: `SHAREDCARE_REFERENCES_LENIENT=1` (Settings.
references_lenient) stores dangling local references as sent. `sharedcare` loaders that replay an export use it.
"""

from __future__ import annotations

import re

from service.fhir.outcome import Issue, OperationOutcomeError
from service.fhir.types import RESOURCE_TYPES

LOCAL_RE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
NOT_CHECKED = frozenset({"AuditEvent"})


def local_targets(references: list[tuple[str, str]], base: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(type, id) -> [(path, reference as written)] for the references that name a resource on this server."""
    prefix = base.rstrip("/") + "/"
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for path, ref in references:
        if path.startswith("Bundle.entry["):  # a stored document or collection: its entries refer among themselves
            continue
        bare = ref.removeprefix(prefix)
        m = LOCAL_RE.match(bare)
        if m is None or m.group(1) not in RESOURCE_TYPES or m.group(1) in NOT_CHECKED:
            continue
        out.setdefault((m.group(1), m.group(2)), []).append((path, ref))
    return out


def issues(missing: list[tuple[str, str]], where: str = "") -> list[Issue]:
    return [Issue("error", "not-found", f"{where}{path}: the reference {ref!r} does not resolve: there is no such "
                  "resource on this server (local references must resolve; a bulk load that arrives out of order "
                  "may set SHAREDCARE_REFERENCES_LENIENT=1)", (path,)) for path, ref in missing]


def refuse(missing: list[tuple[str, str]], where: str = "") -> OperationOutcomeError:
    found = issues(missing, where)
    return OperationOutcomeError(422, "processing", "", issues=found)
