"""Subscription tables: the registry of accepted Subscriptions and the durable queue of their deliveries.

- `subscription`: one row per Subscription resource, kept by the write listener in the resource's own
  transaction: what it watches (`criteria_type`, `criteria`), its channel (endpoint, headers, payload kind), its
  status (active | off | error | deleted), when it ends, and who it runs as (`owner`: the creator's verified
  token claims and purposes of use, from which its RequestContext is rebuilt). Names no one (not patient data).
- `subscription_delivery`: one row per notification to send (a matching create or update), inserted in the
  transaction of the write that caused it: `state` pending -> done | failed | dropped, `attempts`, `next_at`
  (when it is due; a worker claiming it pushes it on by its lease, so a job whose worker died is due again), the
  last error and HTTP status. Names the resource and version, not its content (read again, as the owner, when
  it is sent).
Times are integer microseconds UTC.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from service.storage.tables import metadata

BigId = BigInteger().with_variant(Integer(), "sqlite")

subscription = Table(
    "subscription", metadata,
    Column("id", String(64), primary_key=True),  # the Subscription resource's id
    Column("criteria_type", String(64), nullable=False),
    Column("criteria", Text, nullable=False),  # the query after "Type?" ('' for every resource of the type)
    Column("status", String(16), nullable=False),  # active | off | error | deleted
    Column("endpoint", Text, nullable=False),
    Column("payload", String(16), nullable=False),  # empty | id-only | full-resource
    Column("headers", Text, nullable=False),  # JSON list of [name, value]
    Column("end_at", BigInteger, nullable=True),
    Column("owner", Text, nullable=False),  # JSON: who it runs as (service/subscriptions/owner.py)
    Column("error", Text, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)
Index("ix_subscription_type", subscription.c.criteria_type, subscription.c.status)

subscription_delivery = Table(
    "subscription_delivery", metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("subscription_id", String(64), nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("event", String(16), nullable=False),  # create | update
    Column("state", String(16), nullable=False),  # pending | done | failed | dropped
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
)
Index("ix_subscription_delivery_due", subscription_delivery.c.state, subscription_delivery.c.next_at)
Index("ix_subscription_delivery_sub", subscription_delivery.c.subscription_id, subscription_delivery.c.state)
