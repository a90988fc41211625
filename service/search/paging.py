"""Paging cursors: keyset positions signed (HMAC-SHA256) together with the query they belong to.

A cursor is `base64url(json([direction, keys])) + "." + base64url(mac)`, where the MAC covers the
cursor payload, the request path, the applied parameters (canonical order) and the caller's identity.
Editing the cursor, the query or replaying it as someone else gives 400; the search itself re-runs
with the caller's own access filter on every page, so a cursor can never reach data the caller
could not search.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

from service.fhir.outcome import bad_request


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str, path: str, params: list[tuple[str, str]], who: str) -> str:
    msg = orjson.dumps([payload, path, sorted(params), who])
    return _b64(hmac.new(secret, msg, hashlib.sha256).digest()[:18])


def sign(secret: bytes, direction: str, keys: list[Any], path: str, params: list[tuple[str, str]],
         who: str) -> str:
    payload = _b64(orjson.dumps([direction, keys]))
    return payload + "." + _mac(secret, payload, path, params, who)


def verify(secret: bytes, cursor: str, path: str, params: list[tuple[str, str]], who: str) -> tuple[str, list[Any]]:
    bad = bad_request("The paging link is not valid for this search (it was altered, or belongs to another "
                      "query or caller); start the search again", code="invalid")
    payload, _, mac = cursor.partition(".")
    if not payload or not mac or not hmac.compare_digest(mac, _mac(secret, payload, path, params, who)):
        raise bad
    try:
        direction, keys = orjson.loads(_unb64(payload))
    except (ValueError, TypeError):
        raise bad from None
    if direction not in ("next", "prev") or not isinstance(keys, list):
        raise bad
    return direction, keys
