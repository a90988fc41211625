"""The API rate limit per caller: past it a caller gets 429 with Retry-After and an OperationOutcome, others are
unaffected, and the count is shared by every process (two throttles on one database stand for two processes).
On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.auth.throttle import WINDOW, ApiThrottle
from service.fhir.outcome import OperationOutcomeError
from tests.api.support import assert_outcome
from tests.conftest import make_auth_headers


@pytest.fixture
def limited(demo, settings):  # type: ignore[no-untyped-def]
    from service.api.app import create_app
    from service.bootstrap import build_services

    tight = settings.model_copy(update={"api_rate_per_minute": 5})
    services = build_services(tight)
    with TestClient(create_app(tight, services=services)) as c:
        yield c, services
    services.db.dispose()


def test_a_caller_past_the_limit_gets_429_and_others_do_not(limited):
    c, services = limited
    nina, sam = make_auth_headers(services, "nurse.nina"), make_auth_headers(services, "social.sam")
    answers = [c.get("/fhir/Patient/pat-pat", headers=nina).status_code for _ in range(5)]
    assert answers == [200] * 5
    r = c.get("/fhir/Patient/pat-pat", headers=nina)
    body = assert_outcome(r, 429, "Too many requests")
    assert body["issue"][0]["code"] == "throttled"
    assert 1 <= int(r.headers["retry-after"]) <= WINDOW
    assert c.get("/fhir/CarePlan?subject=Patient/pat-pat", headers=nina).status_code == 429  # every interaction
    assert c.get("/fhir/Patient/pat-pat", headers=sam).status_code == 200  # another caller is unaffected
    assert c.get("/fhir/metadata").status_code == 200  # (no caller: the CapabilityStatement stays public)


def test_the_count_is_shared_between_processes(demo):
    now = (10_000_000 // WINDOW) * WINDOW + 5.0
    one, two = ApiThrottle(6), ApiThrottle(6)
    for _ in range(3):
        one.check("nurse.nina", demo.db, now=now)
        two.check("nurse.nina", demo.db, now=now)
    one.sync(now=now)  # (a process adds its counts once a second, learning the total so far)
    two.sync(now=now)  # two knows all six
    with pytest.raises(OperationOutcomeError) as err:
        two.check("nurse.nina", demo.db, now=now + 1)
    assert err.value.status == 429
    one.check("nurse.nina", demo.db, now=now + 1)  # one's view is a second old: it lets one more through,
    one.sync(now=now + 1)                          # then it knows
    with pytest.raises(OperationOutcomeError):
        one.check("nurse.nina", demo.db, now=now + 2)
    one.check("social.sam", demo.db, now=now + 2)
    one.check("nurse.nina", demo.db, now=now + WINDOW)  # a new minute starts again
