"""The write rule of Subscription: what the server will do is checked before a Subscription is stored.

On every create or update by a caller (not the server's own jobs): the channel and criteria must be ones this
server supports (service/subscriptions/spec.py; 422 otherwise), and the criteria are run once as the caller
(an unknown parameter, or a type they may not search, is refused now rather than never matching later).
Status: a caller may ask for `requested` or `active` (the subscription becomes `active` at once: nothing is
left to check after this rule, and R4 defines no handshake) or `off`; `error` is the server's to set, with its
reason in `error`.
"""

from __future__ import annotations

from typing import Any

from service.fhir.outcome import OperationOutcomeError
from service.subscriptions import headers, spec


def _ended(end: Any) -> bool:
    from service.clock import now_us
    from service.subscriptions.matching import instant_us

    at = instant_us(end)
    return at is not None and at <= now_us()


class SubscriptionRules:
    def __init__(self, allow_http: Any) -> None:
        self.allow_http = allow_http  # () -> bool

    def before(self, repo: Any, rtype: str, before: dict[str, Any] | None, after: dict[str, Any], change: Any) -> None:
        if repo.ctx.is_internal:  # the delivery worker setting `error`, tools: as written
            return
        parsed = spec.parse(after, allow_http=self.allow_http())
        status = after.get("status")
        if status in (None, "requested", "active"):
            after["status"] = "active"
            after.pop("error", None)
        elif status == "error":
            raise OperationOutcomeError(422, "business-rule", "Subscription.status 'error' is set by the server "
                                        "when notifications fail; send 'requested' (or 'active') to resume, or "
                                        "'off' to pause")
        elif status != "off":
            raise spec.invalid(f"Subscription.status {status!r} is not one of requested, active, error, off")
        if status != "off" and _ended(after.get("end")):
            raise spec.invalid(f"Subscription.end {after['end']!r} is in the past: nothing would ever be sent")
        self._check_criteria(repo, parsed)
        headers.withhold(repo.ctx.request_id, after, parsed.headers)  # (kept by the registry, not in the resource)

    @staticmethod
    def _check_criteria(repo: Any, parsed: spec.Spec) -> None:
        probe = [*parsed.params, ("_id", "subscription-criteria-check")]
        try:
            repo.find(parsed.criteria_type, probe)
        except OperationOutcomeError as err:
            if err.status != 400:
                raise
            raise OperationOutcomeError(422, "not-supported", f"Subscription.criteria "
                                        f"{parsed.criteria_type}?{parsed.query} cannot be matched by this server: "
                                        f"{err.diagnostics}") from None

    def after(self, repo: Any, stored: Any, before: dict[str, Any] | None, change: Any) -> None:
        return None
