"""FHIR interactions as plain handlers `(FhirRequest, Session) -> FhirResponse`; they know nothing of HTTP.

The HTTP adapter (service.api.fhir_http) turns an HTTP request into a FhirRequest; the transaction and
batch processor (bundle.py) builds FhirRequests from Bundle entries and calls the same handlers.
"""
