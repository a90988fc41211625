"""The policy enforcement point: care relationships, consent decisions (the pure PDP in `consent/`),
break-glass and the National Data Opt-out, applied to every FHIR interaction through the Guard protocol."""
