"""The one door to stored data: `Repository`, built per request from its context (see repository.py)."""

from service.repository.repository import Repository, StorageUnavailable
from service.repository.rules import Change, WriteRule, WriteRules

__all__ = ["Change", "Repository", "StorageUnavailable", "WriteRule", "WriteRules"]
