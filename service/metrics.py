"""Prometheus metrics at `GET /metrics` (text exposition), with prometheus_client.

What is measured:
- `sharedcare_requests_total{interaction,type,status}` and `sharedcare_request_duration_seconds{interaction,type}`
  (a histogram): every FHIR request, from the same numbers as its log line;
- `sharedcare_policy_decisions_total{verdict}`: the access policy's decisions (permit, deny, hidden, break-glass),
  from the notes each request's record carries for its audit row;
- `sharedcare_db_connections_in_use{pool}` and `sharedcare_db_pool_size{pool}`: the database pools (write, read,
  loop, replica), sampled once a second in each process;
- with a read replica: `sharedcare_replica_reads_total{where}` (searches and export read units, by where they ran),
  `sharedcare_replica_staleness_seconds` (its staleness bound as the answering process sees it, read at scrape);
- `sharedcare_audit_commit_seconds`: how long a request waits for its audit row's group commit;
- `sharedcare_audit_seal_seconds` and `sharedcare_audit_sealed_rows_total`: each sealing run (any process);
- background queues, read from the database at scrape: `sharedcare_export_jobs{state}` (queued, running),
  `sharedcare_subscription_deliveries_pending`, `sharedcare_subscription_oldest_pending_seconds`;
- `sharedcare_audit_seal_lag_seconds` (the age of the oldest audit row not sealed yet, 0 when none) and
  `sharedcare_audit_last_seal_age_seconds`: read from the database when /metrics is scraped.

Several processes (`sharedcare serve --workers N`): `serve` points PROMETHEUS_MULTIPROC_DIR at an empty folder
under the var directory before the workers start; each process then keeps its values in a memory-mapped file
there and /metrics, whichever worker answers it, adds them up (prometheus_client's multiprocess mode). One
process (tests, an embedded app): the ordinary in-memory registry.

Cost per request: one cached counter and one histogram observation (~2 us; no labels() lookup on the hot path).

Who may read it: only a client on the loopback interface with no forwarding headers (a scraper on the same host
or pod, or a sidecar); through the public proxy it answers 404, like any unknown path. It holds no personal data.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException

log = logging.getLogger("sharedcare.metrics")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("sharedcare_requests", "FHIR requests by interaction, resource type and HTTP status",
                   ["interaction", "type", "status"])
DURATION = Histogram("sharedcare_request_duration_seconds", "FHIR request latency, from the request to the answer",
                     ["interaction", "type"], buckets=BUCKETS)
IN_USE = Gauge("sharedcare_db_connections_in_use", "Database connections checked out of the pool", ["pool"],
               multiprocess_mode="livesum")
POOL_SIZE = Gauge("sharedcare_db_pool_size", "Connections each pool keeps (beyond them it may open overflow ones)",
                  ["pool"], multiprocess_mode="livesum")
AUDIT_COMMIT = Histogram("sharedcare_audit_commit_seconds", "How long a request waited for its audit row's group "
                         "commit", buckets=BUCKETS)
SEAL = Histogram("sharedcare_audit_seal_seconds", "Duration of a sealing run", buckets=BUCKETS)
SEALED = Counter("sharedcare_audit_sealed_rows", "Audit rows sealed")
DECISIONS = Counter("sharedcare_policy_decisions", "Access policy decisions noted on FHIR requests, by verdict (each "
                    "distinct decision once per request)", ["verdict"])
VERDICTS = ("permit", "deny", "hidden", "break-glass")
REPLICA_READS = Counter("sharedcare_replica_reads", "Searches and export read units that could use the read replica, "
                        "by where they ran (replica, primary)", ["where"])

_requests: dict[tuple[str, str, int], Any] = {}
_durations: dict[tuple[str, str], Any] = {}


def observe_request(interaction: str, rtype: str, status: int, seconds: float, notes: Iterable[str] = ()) -> None:
    """One FHIR request; `notes`: its RequestRecord's notes, whose `policy: <verdict> ...` lines are counted."""
    key = (interaction, rtype, status)
    counter = _requests.get(key)
    if counter is None:
        counter = _requests[key] = REQUESTS.labels(interaction, rtype, str(status))
    counter.inc()
    hist = _durations.get(key[:2])
    if hist is None:
        hist = _durations[key[:2]] = DURATION.labels(interaction, rtype)
    hist.observe(seconds)
    for text in notes:
        if text.startswith("policy: "):
            words = text[8:].split(" ", 2)
            verdict = words[0].rstrip(":")
            if verdict == "search" and len(words) > 1:
                verdict = words[1].rstrip(":")
            _decision(verdict if verdict in VERDICTS else "other").inc()


_decisions: dict[str, Any] = {}


def _decision(verdict: str) -> Any:
    child = _decisions.get(verdict)
    if child is None:
        child = _decisions[verdict] = DECISIONS.labels(verdict)
    return child


def observe_replica_read(on_replica: bool) -> None:
    """A search or export read unit that could have used the read replica (counted only when one is configured)."""
    REPLICA_READS.labels("replica" if on_replica else "primary").inc()


def observe_audit_commit(seconds: float) -> None:
    AUDIT_COMMIT.observe(seconds)


def observe_seal(seconds: float, rows: int) -> None:
    SEAL.observe(seconds)
    if rows:
        SEALED.inc(rows)


def watch_pools(db: Any) -> None:
    """Keep each pool's checked-out connections in a gauge: sampled once a second by a thread of this process (a
    gauge write per checkout and checkin was two memory-mapped writes on every request's hot path)."""
    from service.background import ProcessThread

    pools = []
    for name, engine in zip(("write", "read", "loop", "replica"), db.engines, strict=False):
        size = getattr(engine.pool, "size", None)
        POOL_SIZE.labels(name).set(size() if callable(size) else 0)
        checked_out = getattr(engine.pool, "checkedout", None)
        if callable(checked_out):
            pools.append((IN_USE.labels(name), checked_out))
    if not pools:
        return

    def sample() -> None:
        while True:
            for gauge, checked_out in pools:
                gauge.set(checked_out())
            time.sleep(POOL_SAMPLE_SECONDS)

    thread = db.__dict__.get("_sharedcare_pool_sampler")
    if thread is None:
        thread = db.__dict__["_sharedcare_pool_sampler"] = ProcessThread("metrics-pools", sample)
    thread.ensure()


POOL_SAMPLE_SECONDS = 1.0


def _seal_state(services: Any) -> tuple[float, float | None]:
    """(seal lag, age of the newest seal) in seconds, from the database."""
    import orjson
    from sqlalchemy import func, select

    from service.audit.tables import audit_log, audit_seal

    now_us = time.time() * 1e6
    with services.db.read() as conn:
        last = conn.execute(select(audit_seal.c.sealed_at, audit_seal.c.ranges).order_by(audit_seal.c.id.desc())
                            .limit(1)).first()
        hi = max((r[1] for r in orjson.loads(last.ranges)), default=0) if last is not None else 0
        oldest = conn.execute(select(func.min(audit_log.c.recorded)).where(audit_log.c.seq > hi)).scalar()
    lag = max(0.0, (now_us - oldest) / 1e6) if oldest is not None else 0.0
    return lag, ((now_us - last.sealed_at) / 1e6 if last is not None else None)


def _queues(services: Any) -> tuple[dict[str, int], int, float]:
    """(export jobs by state, subscription deliveries pending, age of the oldest pending one) from the database."""
    from sqlalchemy import text

    now_us = time.time() * 1e6
    with services.db.read() as conn:
        jobs = {str(state): int(n) for state, n in conn.execute(text(
            "SELECT state, count(*) FROM export_job WHERE state IN ('queued', 'running') GROUP BY state"))}
        pending, oldest = conn.execute(text(
            "SELECT count(*), min(created_at) FROM subscription_delivery WHERE state = 'pending'")).one()
    return jobs, int(pending or 0), max(0.0, (now_us - oldest) / 1e6) if oldest else 0.0


def exposition(services: Any) -> bytes:
    """The text exposition: this process's registry, or every process's values in multiprocess mode; plus the
    seal lag read now."""
    from prometheus_client import REGISTRY

    registry: Any = REGISTRY
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    body = generate_latest(registry)
    extra = CollectorRegistry()
    lag = Gauge("sharedcare_audit_seal_lag_seconds", "Age of the oldest audit row not sealed yet (0: all sealed)",
                registry=extra)
    age = Gauge("sharedcare_audit_last_seal_age_seconds", "Seconds since the newest seal (-1: none yet)",
                registry=extra)
    try:
        seal_lag, seal_age = _seal_state(services)
    except Exception:  # noqa: BLE001 - the database may be away: the request metrics are still worth having
        up = 0
    else:
        up = 1
        lag.set(seal_lag)
        age.set(-1 if seal_age is None else seal_age)
    Gauge("sharedcare_database_up", "Whether the scrape could read the database", registry=extra).set(up)
    try:
        jobs, pending, oldest = _queues(services)
    except Exception as exc:  # noqa: BLE001 - (no such tables yet, or the database is away)
        log.debug("metrics: the background queues could not be read (%s)", type(exc).__name__)
    else:
        export = Gauge("sharedcare_export_jobs", "Bulk export jobs waiting or running", ["state"], registry=extra)
        for state in ("queued", "running"):
            export.labels(state).set(jobs.get(state, 0))
        Gauge("sharedcare_subscription_deliveries_pending", "Subscription notifications waiting to be delivered",
              registry=extra).set(pending)
        Gauge("sharedcare_subscription_oldest_pending_seconds", "Age of the oldest notification waiting (0: none)",
              registry=extra).set(oldest)
    replica = getattr(services.db, "replica", None)
    if replica is not None:
        staleness = replica.lag()
        Gauge("sharedcare_replica_staleness_seconds", "The read replica's staleness bound as this process sees it "
              "(searches use it while at most SHAREDCARE_REPLICA_MAX_LAG_SECONDS; -1: unknown or set aside)",
              registry=extra).set(-1 if staleness == float("inf") else staleness)
    return body + generate_latest(extra)


CONTENT_TYPE = CONTENT_TYPE_LATEST
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def install(app: Any) -> None:
    """GET /metrics on the app, for loopback clients only (see the module's text)."""
    watch_pools(app.state.services.db)

    async def metrics(request: Request) -> Response:
        forwarded = "x-forwarded-for" in request.headers or "forwarded" in request.headers
        if request.client is None or request.client.host not in LOOPBACK or forwarded:
            raise HTTPException(404)
        import anyio.to_thread

        body = await anyio.to_thread.run_sync(exposition, app.state.services)
        return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
