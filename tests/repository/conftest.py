"""The repository's tests use the demo identities (tests/policy/conftest.py)."""

from tests.policy.conftest import who  # noqa: F401  (fixture)
