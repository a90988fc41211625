"""The shared-care record service: FHIR R4 REST over a versioned record store."""
