"""Benchmarks that print figures (`make bench`, i.e. `python -m bench.run`); never timed unit tests."""
