"""One stored version of a resource, as the repository hands it out and the API serves it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Stored:
    """One version. `content` is the canonical JSON exactly as served; for a deleted resource's current row
    it is what was deleted (never served: the policy decides on it), and None for the deletion version.
    `owners`: the patients it belongs to, primary first (service.ownership)."""

    res_type: str
    res_id: str
    version: int
    last_updated: int
    deleted: bool
    content: bytes | None
    method: str = ""
    seq: int = 0
    owners: tuple[str, ...] = ()

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def ref(self) -> str:
        return f"{self.res_type}/{self.res_id}"

    def json(self) -> dict[str, Any]:
        assert self.content is not None
        return orjson.loads(self.content)
