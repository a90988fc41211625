"""The one SQLAlchemy MetaData for every table (Alembic's target); each area defines its tables on it."""

# Import the modules that define tables so they register on `metadata`.
import service.audit.tables
import service.auth.tables
import service.export.tables
import service.policy.tables
import service.search.tables
import service.subscriptions.tables  # noqa: F401
from service.storage.tables import metadata

__all__ = ["metadata"]
