"""Demo data: organisations, people and records for `sharedcare demo load` and `make run`."""
