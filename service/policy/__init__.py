"""The access policy: care relationships, consent decisions (the pure PDP in `consent/`), break-glass and the
National Data Opt-out. Only the repository (service.repository) consults it; the bootstrap builds it."""
