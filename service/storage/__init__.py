"""Versioned FHIR record storage: tables and the store (one method per storage interaction)."""
