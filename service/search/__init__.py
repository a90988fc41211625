"""FHIR search: parameters from the official definitions, index tables kept on every write, and queries that
carry the caller's access condition (service/search/engine.py). Used through the repository only."""
