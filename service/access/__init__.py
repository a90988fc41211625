"""Who is asking and what they may do: the request context and the access guard.

Every FHIR interaction calls the guard before it touches storage (type-level check), and again per
resource where the answer depends on the resource. The identity and consent layers supply the guard.
"""
