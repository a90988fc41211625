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

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def guard(self) -> Guard:
        return self.services.guard

    @property
    def base(self) -> str:
        return self.services.base
