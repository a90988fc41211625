"""A subscription's header values are secrets (typically the bearer token of the subscriber's inbox): they are
kept in the registry (`subscription.headers`), which only the delivery worker reads, and never stored in the
Subscription resource, which anyone who may read Subscriptions can read. The stored resource says
`Name: ***` for each; a client that sends `***` back (a read, changed, written again) keeps the value kept for
that name.

The write rule (before the resource is stored) hands the values to the write listener (which keeps the registry)
through this context: the listener takes them only for the same request's write, so nothing can cross from one
request to another.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from service.fhir.outcome import OperationOutcomeError

MASK = "***"
_pending: ContextVar[tuple[str, tuple[tuple[str, str], ...]] | None] = ContextVar("subscription_headers",
                                                                                    default=None)


def withhold(request_id: str, resource: dict[str, Any], headers: tuple[tuple[str, str], ...]) -> None:
    """Before the Subscription is stored: its header values leave the resource."""
    channel = resource.get("channel")
    if isinstance(channel, dict) and headers:
        channel["header"] = [f"{name}: {MASK}" for name, _ in headers]
    _pending.set((request_id, headers))


def resolve(writer: Any, kept: list[list[str]], stored: tuple[tuple[str, str], ...]) -> list[list[str]]:
    """The header values to keep for the Subscription just stored: what this request sent (`***`: the value kept
    for that name), or, for the server's own writes, what was kept."""
    pending = _pending.get()
    _pending.set(None)
    if pending is None or writer is None or getattr(writer, "request_id", None) != pending[0]:
        by_name = {n.lower(): v for n, v in kept}
        return [[n, by_name.get(n.lower(), v)] for n, v in stored]
    out = []
    by_name = {n.lower(): v for n, v in kept}
    for name, value in pending[1]:
        if value == MASK:
            if name.lower() not in by_name:
                raise OperationOutcomeError(422, "invalid", f"Subscription.channel.header {name!r} is '{MASK}' but "
                                            "there is no value kept for it: send the value itself")
            value = by_name[name.lower()]
        out.append([name, value])
    return out
