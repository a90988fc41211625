"""FHIR search. `install(services)` attaches the search engine and its index listener to the store."""

from __future__ import annotations

from service.search.engine import SearchEngine


def install(services) -> None:  # type: ignore[no-untyped-def]
    import service.operations.everything  # noqa: F401  (registers $everything)

    engine = SearchEngine(services)
    services.search = engine
    services.store.listeners.append(engine.index_listener)
