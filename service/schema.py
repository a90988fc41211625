"""The one SQLAlchemy MetaData for every table (Alembic's target); each area defines its tables on it."""

from service.storage.tables import metadata

# Import the modules that define tables so they register on `metadata`.
import service.search.tables  # noqa: E402,F401
import service.audit.tables  # noqa: E402,F401
import service.auth.tables  # noqa: E402,F401
import service.policy.tables  # noqa: E402,F401
__all__ = ["metadata"]
