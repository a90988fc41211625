"""The write listener: keeps the registry in step with Subscription resources, and enqueues a delivery for every
active subscription a created or updated resource matches, in the write's own transaction.

Matching runs the subscription's criteria through the search engine, restricted to the written resource's id,
through a Repository built for the subscription's owner (service/subscriptions/owner.py) on the write's own
connection: the owner's scopes, care relationships and the person's consents are part of the query, so a
resource the owner may not see never matches, and nothing about it is queued. R4: the criteria are applied to
the new version, so a deletion, or an update after which the resource no longer matches, notifies no one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import Connection

from service.access.record import RequestRecord
from service.clock import now_us
from service.db import Prepared
from service.fhir.outcome import OperationOutcomeError
from service.fhir.stored import Stored
from service.subscriptions import headers, spec
from service.subscriptions import owner as owners
from service.subscriptions.tables import subscription as S
from service.subscriptions.tables import subscription_delivery as D

log = logging.getLogger("sharedcare.subscriptions")
CTX_KEY = "sharedcare.ctx"  # the writer of the unit of work (set by the Repository; the authorship stamper's too)


# The active subscriptions to a type, over a write's parameters: on its own, or on PostgreSQL as the last part
# of a new resource's own insert statement (service.storage.store.FirstVersionQuery), so that a create asks for
# its subscriptions without a round trip of its own.
ACTIVE = (f"SELECT id, criteria, owner FROM {S.name} WHERE criteria_type = :res_type AND status = 'active' "
          "AND (end_at IS NULL OR end_at > :last_updated)")
_ACTIVE = Prepared(lambda _dialect: text(ACTIVE))


class Matcher:
    acts_on = frozenset({"Subscription"})  # (its registry row; deliveries the held statement checks for)

    def __init__(self, services: Callable[[], Any], enqueued: Callable[[], None]) -> None:
        self._services = services
        self._enqueued = enqueued
        self.listener = self

    def __call__(self, conn: Connection, stored: Stored, resource: dict[str, Any] | None) -> None:
        self.given(conn, stored, resource, None)

    def query(self) -> str:
        return ACTIVE

    def given(self, conn: Connection, stored: Stored, resource: dict[str, Any] | None, subs: list[Any] | None
              ) -> None:
        """`subs`: the active subscriptions to the resource's type, when its insert already read them."""
        if stored.res_type == "Subscription":
            self.register(conn, stored, resource)
            return
        if stored.deleted or resource is None or stored.res_type in spec.NOT_WATCHABLE:
            return
        now = stored.last_updated if subs is not None else now_us()
        if subs is None:
            subs = _ACTIVE.rows(conn, {"res_type": stored.res_type, "last_updated": now})  # (compiled once)
        if subs:
            self._match(conn, stored, subs, now)

    def _match(self, conn: Connection, stored: Stored, subs: list[Any], now: int) -> None:
        from urllib.parse import parse_qsl

        from service.repository import Repository

        services = self._services()
        writer = conn.info.get(CTX_KEY)
        queued = 0
        try:
            for sub_id, criteria, owner_text in subs:
                ctx = owners.context_for(services, conn, owner_text)
                if ctx is None:
                    continue
                repo = Repository(services, conn, ctx, RequestRecord())  # (as the subscriber: never the writer)
                params = [*parse_qsl(criteria, keep_blank_values=True), ("_id", stored.res_id)]
                try:
                    found = repo.find(stored.res_type, params)
                except OperationOutcomeError as err:  # the owner may no longer search the type: nothing to send
                    log.info("subscription %s does not match %s: %s", sub_id, stored.ref, err.diagnostics)
                    continue
                if not found:
                    continue
                conn.execute(insert(D).values(
                    subscription_id=sub_id, res_type=stored.res_type, res_id=stored.res_id, version=stored.version,
                    event="create" if stored.version == 1 else "update", state="pending", attempts=0, next_at=now,
                    created_at=now))
                queued += 1
        finally:
            if writer is None:
                conn.info.pop(CTX_KEY, None)
            else:
                conn.info[CTX_KEY] = writer
        if queued:
            self._enqueued()

    def register(self, conn: Connection, stored: Stored, resource: dict[str, Any] | None) -> None:
        """The registry row of a Subscription just written (its rule has checked it), or its deletion."""
        current = conn.execute(select(S.c.owner, S.c.headers).where(S.c.id == stored.res_id)).first()
        now = now_us()
        if stored.deleted or resource is None:
            if current is not None:
                conn.execute(update(S).where(S.c.id == stored.res_id).values(status="deleted", updated_at=now))
                _drop_pending(conn, stored.res_id, "the subscription was deleted")
            return
        writer = conn.info.get(CTX_KEY)
        # Who it runs as: whoever wrote it through the API, who chose its criteria and endpoint; the server's own
        # changes (the worker setting `error`) keep the owner.
        if current is not None and (writer is None or writer.is_internal):
            owner_text = current[0]
        else:
            owner_text = owners.dumps(owners.owner_of(writer))
        try:
            parsed = spec.parse(resource, allow_http=True)
        except OperationOutcomeError:  # (only the server's own writes skip the rule: keep them, never deliver)
            parsed = None
        status = str(resource.get("status") or "off") if parsed is not None else "off"
        values = {
            "criteria_type": parsed.criteria_type if parsed else str(resource.get("criteria") or "")[:64],
            "criteria": parsed.query if parsed else "", "status": status,
            "endpoint": parsed.endpoint if parsed else "", "payload": parsed.payload if parsed else "empty",
            "headers": orjson.dumps(headers.resolve(writer, orjson.loads(current[1]) if current is not None else [],
                                                    parsed.headers) if parsed else []).decode(),
            "end_at": instant_us(resource.get("end")), "owner": owner_text,
            "error": resource.get("error"), "updated_at": now,
        }
        if current is None:
            conn.execute(insert(S).values(id=stored.res_id, **values))
        else:
            conn.execute(update(S).where(S.c.id == stored.res_id).values(**values))
        if status != "active":
            _drop_pending(conn, stored.res_id, f"the subscription is {status}")
        else:
            self._enqueued()  # (this process's worker runs from now on)


def _drop_pending(conn: Connection, sub_id: str, why: str) -> None:
    conn.execute(update(D).where(D.c.subscription_id == sub_id, D.c.state == "pending").values(
        state="dropped", finished_at=now_us(), last_error=why))


def instant_us(value: Any) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    from datetime import datetime

    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return int(dt.timestamp() * 1_000_000)
