"""The one door to stored data: `Repository`, built per request from its context (see repository.py)."""

from service.repository.repository import Repository
from service.repository.rules import Change, WriteRule, WriteRules

__all__ = ["Change", "Repository", "WriteRule", "WriteRules"]
