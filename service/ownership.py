"""Whose data is this? The one answer, used by the access policy, the search index and the audit alike.

`owners(rtype, resource, resolve)` gives the patients a resource belongs to, primary owner first:
- a Patient is its own;
- a type on the positive list `NOT_PATIENT_DATA` (Organization, Practitioner, Questionnaire, ValueSet, ...)
  is nobody's;
- any other resource belongs to every patient it names: a literal reference to `Patient/<id>` anywhere in
  it (the R4 patient compartment's elements come first, so `subject`, `patient`, `for`, ... give the
  primary owner), or a logical reference by NHS number to a Patient in the record;
- Provenance (through its targets), AuditEvent (through the entities it is about), and any other resource
  that names no patient itself but refers to someone's data (a Task whose `focus` is a person's
  assessment, a List of their observations) belong to the owners of what they refer to.

`resolve(keys)` answers the indirect part from the record: for "Type/id" keys the stored owners of those
resources, for NHS-number keys (`system|value`) the Patient holding that number. The store supplies it at
write time and keeps the answer with every version (`resource.owners`, `resource.patient_id`, the
`sp_compartment` rows), so reads, searches and the audit use exactly what was worked out here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
DATA = Path(__file__).resolve().parent / "data" / "patient_compartment.json"

# Types that never hold a person's data: definitions, terminology, directories and infrastructure.
NOT_PATIENT_DATA = frozenset({
    "ActivityDefinition", "BiologicallyDerivedProduct", "CapabilityStatement", "CatalogEntry",
    "ChargeItemDefinition", "CodeSystem", "CompartmentDefinition", "ConceptMap", "DeviceDefinition",
    "EffectEvidenceSynthesis", "Endpoint", "EventDefinition", "Evidence", "EvidenceVariable", "ExampleScenario",
    "GraphDefinition", "HealthcareService", "ImplementationGuide", "InsurancePlan", "Library", "Location",
    "Measure", "Medication", "MedicationKnowledge", "MedicinalProduct", "MedicinalProductAuthorization",
    "MedicinalProductContraindication", "MedicinalProductIndication", "MedicinalProductIngredient",
    "MedicinalProductInteraction", "MedicinalProductManufactured", "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical", "MedicinalProductUndesirableEffect", "MessageDefinition", "NamingSystem",
    "ObservationDefinition", "OperationDefinition", "Organization", "OrganizationAffiliation",
    "PlanDefinition", "Practitioner", "PractitionerRole", "Questionnaire", "ResearchDefinition",
    "ResearchElementDefinition", "RiskEvidenceSynthesis", "SearchParameter", "SpecimenDefinition",
    "StructureDefinition", "StructureMap", "Subscription", "Substance", "SubstanceNucleicAcid",
    "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation", "SubstanceSourceMaterial",
    "SubstanceSpecification", "TerminologyCapabilities", "TestScript", "ValueSet",
})
# Where the owners are what the resource is about, not who it names.
THROUGH = {"Provenance": ("target",), "AuditEvent": ("entity.what",)}
MAX_INDIRECT = 100
# The elements that say whom a resource is about, before those that name someone involved (performer, author).
PRIMARY = ("subject", "patient", "for", "beneficiary", "individual")  # references followed for one resource (a bound on the write's cost)

Resolver = Callable[[set[str]], dict[str, tuple[str, ...]]]


@lru_cache(maxsize=1)
def compartment_paths() -> dict[str, tuple[tuple[str, ...], ...]]:
    """The R4 patient CompartmentDefinition's elements per type (they name the primary owner first)."""
    raw = json.loads(DATA.read_text())
    first = {name: i for i, name in enumerate(PRIMARY)}
    return {t: tuple(tuple(p.split(".")) for p in sorted(paths, key=lambda p: first.get(p.split(".")[0], len(first))))
            for t, paths in raw.items()}


def is_patient_data(rtype: str | None) -> bool:
    """Whether resources of this type may hold a person's data."""
    return rtype is not None and rtype not in NOT_PATIENT_DATA


@lru_cache(maxsize=1)
def patient_data_types() -> frozenset[str]:
    """The types whose resources can belong to a patient (the patient compartment, in our sense)."""
    from service.fhir.types import RESOURCE_TYPES

    return frozenset(t for t in RESOURCE_TYPES if t not in NOT_PATIENT_DATA)


def _values(node: Any, path: tuple[str, ...]) -> list[Any]:
    nodes = [node]
    for step in path:
        nxt: list[Any] = []
        for n in nodes:
            if isinstance(n, dict) and step in n:
                v = n[step]
                nxt.extend(v if isinstance(v, list) else [v])
        nodes = nxt
    return nodes


def reference_key(ref: Any) -> str | None:
    """`Type/id` of a literal reference (relative, absolute or versioned; not `#contained`), else None."""
    if not isinstance(ref, dict):
        return None
    text = ref.get("reference")
    if not isinstance(text, str) or text.startswith(("#", "urn:")) or "?" in text:
        return None
    parts = text.split("/")
    if "_history" in parts:
        parts = parts[:parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-1]:
        return f"{parts[-2]}/{parts[-1]}"
    return None


def reference_id(ref: Any, rtype: str = "Patient") -> str | None:
    key = reference_key(ref)
    if key is None:
        return None
    t, _, i = key.partition("/")
    return i if t == rtype else None


def _nhs_key(ref: Any) -> str | None:
    ident = ref.get("identifier") if isinstance(ref, dict) else None
    if isinstance(ident, dict) and ident.get("system") == NHS_NUMBER and isinstance(ident.get("value"), str):
        return f"{NHS_NUMBER}|{ident['value'].replace(' ', '')}"
    return None


def _references(node: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(node, dict):
        if "reference" in node or "identifier" in node:
            out.append(node)
        for k, v in node.items():
            if k != "div" and isinstance(v, (dict, list)):
                _references(v, out)
    elif isinstance(node, list):
        for v in node:
            _references(v, out)


def owners(rtype: str, resource: dict[str, Any], resolve: Resolver | None = None) -> tuple[str, ...]:
    """The ids of the patients this resource belongs to, primary owner first (empty: nobody's)."""
    if rtype == "Patient":
        rid = resource.get("id")
        return (rid,) if isinstance(rid, str) and rid else ()
    if rtype in NOT_PATIENT_DATA:
        return ()
    found: dict[str, None] = {}
    logical: list[str] = []
    for path in compartment_paths().get(rtype, ()):
        for value in _values(resource, path):
            if (pid := reference_id(value)) is not None:
                found.setdefault(pid)
    refs: list[dict[str, Any]] = []
    _references({k: v for k, v in resource.items() if k not in ("id", "meta", "text")}, refs)
    for ref in refs:
        if (pid := reference_id(ref)) is not None:
            found.setdefault(pid)
        elif (nhs := _nhs_key(ref)) is not None and reference_key(ref) is None:
            logical.append(nhs)
    through = [reference_key(v) for path in THROUGH.get(rtype, ()) for v in _values(resource, tuple(path.split(".")))]
    wanted = {k for k in through if k and not k.startswith("Patient/")}
    if not found:  # it names nobody itself: it is about what it refers to
        wanted |= {k for r in refs if (k := reference_key(r)) and k.split("/", 1)[0] not in NOT_PATIENT_DATA}
    wanted |= set(logical)
    if resolve is not None and wanted:
        keys = set(sorted(wanted)[:MAX_INDIRECT])
        answers = resolve(keys)
        for key in sorted(keys):
            for pid in answers.get(key, ()):
                found.setdefault(pid)
    return tuple(found)


def owners_text(ids: Iterable[str]) -> str | None:
    """How owners are kept on a row (space-separated ids; None for nobody's)."""
    text = " ".join(ids)
    return text or None


def parse_owners(text: str | None) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()
