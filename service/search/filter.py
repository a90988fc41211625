"""SearchFilter: what an access policy hands the search engine to restrict a search IN SQL, before paging.

Contract (for the guard / consent layer):

    guard.search_filter(ctx, rtype) -> SearchFilter | None

is looked up with `getattr(session.guard, "search_filter", None)` and, when present, is called once per
resource type a search touches: the searched type, every `_include`/`_revinclude` type, every type of a
compartment search or `$everything`, and the target type of each chained or `_has` step. `None` means "no
restriction". A `SearchFilter` combines (AND) these restrictions:

- `deny_all=True`: nothing of this type is visible; the search answers an empty Bundle with total 0
  (it does not fail: whether to refuse the type outright is `check_type`'s job, which runs first).
- `patients=frozenset({...ids})`: only resources in the patient compartment of one of these Patient ids
  (CompartmentDefinition-patient; the Patient resource itself is in its own compartment). Types that can
  never be in a patient compartment (Organization, Practitioner, ...) are not restricted by this unless
  `confine_non_compartment=True`, in which case they are hidden too. An empty set means no patient at all.
- `exclude_security=frozenset({("system", "code"), ...})`: hide any resource whose `meta.security`
  carries one of these labels (e.g. ("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R")).
  A code with system "" matches that code in any system.

- `scopes`: the SMART scopes that reach this type, as alternatives (any one suffices): each may confine to
  one patient's data and carry `?param=value` restrictions, compiled as search criteria, so totals and
  includes honour a restricted scope exactly as the per-resource check does.
- `where`: an object with `sql(rtype: str | None) -> ColumnElement[bool]` (a condition on `resource` rows
  of that type, or of any type when rtype is None): what a policy cannot say with the fields above (the
  consent policy's care relationships and per-patient redactions, service/policy/sqlfilter.py). Filters
  that share one `where` object are grouped by the engine, so return the same object for every type
  it applies to.
- `all_of`: further filters that must hold too (how a policy guard adds its own to the scope guard's).

The engine turns these into SQL conditions on the same query that counts and pages, so totals,
paging links and includes never reveal a hidden resource. After paging, `guard.can_see(ctx, rtype,
resource)` is still called per resource as a backstop; it should never hide anything if the filter is
right (when it does, the page is shorter and the total is dropped, so nothing is revealed by counts).
Frozen and hashable, so a policy may cache them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ScopeClause:
    patient: str | None = None  # only this patient's data
    criteria: tuple[tuple[str, str], ...] = ()  # search parameters that must all match


@dataclass(frozen=True)
class SearchFilter:
    deny_all: bool = False
    patients: frozenset[str] | None = None
    exclude_security: frozenset[tuple[str, str]] = frozenset()
    confine_non_compartment: bool = False
    where: Any = None
    scopes: tuple[ScopeClause, ...] | None = None
    all_of: tuple[SearchFilter, ...] = ()

    @classmethod
    def both(cls, a: SearchFilter | None, b: SearchFilter | None) -> SearchFilter | None:
        """Both filters (None means no restriction)."""
        if a is None or a.is_noop:
            return b
        if b is None or b.is_noop:
            return a
        if a.deny_all or b.deny_all:
            return cls.deny()
        return cls(all_of=(a, b))

    @classmethod
    def deny(cls) -> SearchFilter:
        return cls(deny_all=True)

    @classmethod
    def only_patients(cls, *ids: str, confine_non_compartment: bool = False) -> SearchFilter:
        return cls(patients=frozenset(ids), confine_non_compartment=confine_non_compartment)

    @property
    def is_noop(self) -> bool:
        return (not self.deny_all and self.patients is None and not self.exclude_security and self.where is None
                and self.scopes is None and all(f.is_noop for f in self.all_of))
