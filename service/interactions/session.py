"""Process-wide services (stateless, shareable by many workers) and the per-request session."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from service.access.context import RequestContext
from service.access.guard import AllowAll, Guard
from service.config import Settings
from service.db import Database
from service.storage.store import Store


@dataclass
class Services:
    settings: Settings
    db: Database
    store: Store
    guard: Guard = field(default_factory=AllowAll)
    search: Any = None  # service.search.engine.SearchEngine
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.settings.fhir_base


@dataclass
class Session:
    services: Services
    conn: Connection
    ctx: RequestContext
    in_bundle: bool = False
    _guard: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # The writing context, for store stampers (authorship); cleared when the unit of work ends.
        self.conn.info["sharedcare.ctx"] = self.ctx

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def guard(self) -> Guard:
        """The access guard, bound to this session when it needs the database (the policy guard loads a
        patient's consents and care relationships once per unit of work)."""
        if self._guard is None:
            g = self.services.guard
            bind = getattr(g, "bind", None)
            self._guard = bind(self) if bind is not None else g
        return self._guard

    @property
    def base(self) -> str:
        return self.services.base
