"""The mixed workload: virtual users of each role, each a closed loop (one request at a time, no think time)
over its own keep-alive connection, for a fixed duration.

| role (identity) | what each request is |
|---|---|
| nurse (nurse.nina) | `caseload search`: `Patient?_has:CareTeam:subject:participant=Practitioner/prac-nina&name=<prefix>`, then `read record`: `GET Patient/{id}` of one of her patients |
| social worker (social.sam) | `save assessment section`: `POST QuestionnaireResponse/{id}/$save-answers` (the Care Act section whole, or the falls answers) on the version she last saw; each social-worker user has her own patients |
| patient (her own token, patient/ scopes) | `view plan`: `CarePlan?subject=Patient/{me}`, then `access log`: `Patient/{me}/$access-log` |
| partner (gp-system, client credentials) | `partner transaction`: `POST /fhir` with a transaction Bundle (an Encounter, two Observations and a Condition referring to it by urn:uuid) for a patient registered with the practice |
| IG lead (ig.iris) | `audit search`: `AuditEvent?patient=Patient/{id}&_count=20`, every fourth one `AuditEvent?date=ge<today>&action=R&_count=20` |

Every acknowledged write (2xx) is remembered with its X-Request-Id, so a fault run can check that it and its
audit row are there afterwards.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from bench.load import answers
from bench.load.stats import OpStats

FHIR_JSON = "application/fhir+json"
OPS = ["caseload search", "read record", "save assessment section", "view plan", "access log", "partner transaction",
       "audit search"]


@dataclass
class Population:
    """What the users work on: ids from the seed."""
    caseload: list[str]                 # nurse.nina's patients (Patient ids)
    sam: list[tuple[str, str]]          # social.sam's patients: (Patient id, QuestionnaireResponse id)
    registered: list[str]               # patients registered with the GP practice (everyone)
    patients: list[str]                 # patients who sign in themselves (Patient ids)
    caseload_names: list[str]           # name prefixes that find some of nina's patients


@dataclass
class Tokens:
    nurse: str
    social: str
    ig: str
    partner: str
    patients: dict[str, str]            # Patient id -> that patient's token


@dataclass
class Mix:
    nurses: int = 10
    social: int = 6
    patients: int = 8
    partners: int = 4
    ig: int = 4

    @property
    def users(self) -> int:
        return self.nurses + self.social + self.patients + self.partners + self.ig


@dataclass
class Acked:
    """Writes the service acknowledged with a 2xx: what must be there afterwards."""
    resources: list[str] = field(default_factory=list)       # Type/id created by partner transactions
    versions: dict[str, int] = field(default_factory=dict)   # QuestionnaireResponse/id -> highest version acked
    request_ids: list[str] = field(default_factory=list)     # X-Request-Id of every acknowledged write


@dataclass
class Run:
    stats: dict[str, OpStats] = field(default_factory=lambda: {op: OpStats() for op in OPS})
    acked: Acked = field(default_factory=Acked)
    failures: list[tuple[float, str, int]] = field(default_factory=list)  # (t, op, status) of every failure
    started: float = 0.0
    seconds: float = 0.0


def _version(resp: httpx.Response) -> int | None:
    etag = resp.headers.get("etag", "")
    digits = "".join(c for c in etag if c.isdigit())
    return int(digits) if digits else None


def _is_outcome(resp: httpx.Response) -> bool:
    try:
        return bool(orjson.loads(resp.content).get("resourceType") == "OperationOutcome")
    except (orjson.JSONDecodeError, AttributeError):
        return False


class Driver:
    def __init__(self, base: str, tokens: Tokens, pop: Population, run: Run, deadline: float,
                 timeout: float = 30.0) -> None:
        self.base, self.tokens, self.pop, self.run = base, tokens, pop, run
        self.deadline, self.timeout = deadline, timeout

    async def timed(self, client: httpx.AsyncClient, op: str, method: str, path: str, token: str,
                    expect: tuple[int, ...] = (200,), **kw: Any) -> httpx.Response | None:
        headers = {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON, **kw.pop("headers", {})}
        t0 = time.perf_counter()
        try:
            resp = await client.request(method, self.base + path, headers=headers, timeout=self.timeout, **kw)
        except httpx.HTTPError as exc:
            took = time.perf_counter() - t0
            self.run.stats[op].add(took, 0, False, f"{type(exc).__name__}: {exc}")
            self.run.failures.append((time.monotonic() - self.run.started, op, 0))
            await asyncio.sleep(0.05)  # a refused connection fails at once: do not spin
            return None
        took = time.perf_counter() - t0
        ok = resp.status_code in expect
        self.run.stats[op].add(took, resp.status_code, ok, resp.text)
        if not ok:
            self.run.failures.append((time.monotonic() - self.run.started, op, resp.status_code))
        return resp

    async def _loop(self, body: Callable[[httpx.AsyncClient, int], Awaitable[None]]) -> None:
        async with _client() as client:
            n = 0
            while time.monotonic() < self.deadline:
                await body(client, n)
                n += 1

    # -- the roles --------------------------------------------------------------------------------------
    async def nurse(self, k: int) -> None:
        rnd = random.Random(k)

        async def body(client: httpx.AsyncClient, n: int) -> None:
            name = rnd.choice(self.pop.caseload_names)
            await self.timed(client, "caseload search", "GET", "/fhir/Patient", self.tokens.nurse,
                             params={"_has:CareTeam:subject:participant": "Practitioner/prac-nina", "name": name,
                                     "_count": "20"})
            if time.monotonic() < self.deadline:
                await self.timed(client, "read record", "GET", f"/fhir/Patient/{rnd.choice(self.pop.caseload)}",
                                 self.tokens.nurse)

        await self._loop(body)

    async def social(self, k: int, of: int) -> None:
        mine = [qr for i, (_pid, qr) in enumerate(self.pop.sam) if i % of == k]
        if not mine:
            return
        rnd = random.Random(100 + k)

        async def body(client: httpx.AsyncClient, n: int) -> None:
            qr = rnd.choice(mine)
            key = f"QuestionnaireResponse/{qr}"
            base = self.run.acked.versions.get(key, 1)
            resp = await self.timed(client, "save assessment section", "POST", f"/fhir/{key}/$save-answers",
                                    self.tokens.social, content=orjson.dumps(answers.save_body(base, n + 7 * k)),
                                    headers={"Content-Type": FHIR_JSON, "Prefer": "return=minimal"})
            if resp is not None and resp.status_code == 200:
                v = _version(resp)
                if v is not None:
                    self.run.acked.versions[key] = max(v, self.run.acked.versions.get(key, 0))
                self.run.acked.request_ids.append(resp.headers.get("x-request-id", ""))
            elif resp is not None and resp.status_code == 412:  # (only after a fault: catch up with the record)
                got = await client.get(f"{self.base}/fhir/{key}", headers={
                    "Authorization": f"Bearer {self.tokens.social}"}, timeout=self.timeout)
                if got.status_code == 200 and _version(got):
                    self.run.acked.versions[key] = _version(got) or base

        await self._loop(body)

    async def patient(self, k: int) -> None:
        pids = list(self.tokens.patients)
        me = pids[k % len(pids)]
        token = self.tokens.patients[me]

        async def body(client: httpx.AsyncClient, n: int) -> None:
            await self.timed(client, "view plan", "GET", "/fhir/CarePlan", token, params={"subject": f"Patient/{me}"})
            if time.monotonic() < self.deadline:
                await self.timed(client, "access log", "GET", f"/fhir/Patient/{me}/$access-log", token,
                                 params={"_count": "20"})

        await self._loop(body)

    async def partner(self, k: int) -> None:
        rnd = random.Random(200 + k)

        async def body(client: httpx.AsyncClient, n: int) -> None:
            pid = rnd.choice(self.pop.registered)
            bundle = visit_bundle(pid, n)
            resp = await self.timed(client, "partner transaction", "POST", "/fhir", self.tokens.partner,
                                    content=orjson.dumps(bundle), headers={"Content-Type": FHIR_JSON,
                                                                           "Prefer": "return=minimal"})
            if resp is not None and resp.status_code == 200:
                for e in orjson.loads(resp.content).get("entry", []):
                    loc = e.get("response", {}).get("location", "")
                    parts = loc.split("/fhir/", 1)[-1].split("/")
                    if len(parts) >= 2:
                        self.run.acked.resources.append(f"{parts[0]}/{parts[1]}")
                self.run.acked.request_ids.append(resp.headers.get("x-request-id", ""))

        await self._loop(body)

    async def ig(self, k: int) -> None:
        rnd = random.Random(300 + k)
        today = time.strftime("%Y-%m-%d", time.gmtime())

        async def body(client: httpx.AsyncClient, n: int) -> None:
            if n % 4 == 3:
                params = {"date": f"ge{today}", "action": "R", "_count": "20"}
            else:
                params = {"patient": f"Patient/{rnd.choice(self.pop.caseload)}", "_count": "20"}
            await self.timed(client, "audit search", "GET", "/fhir/AuditEvent", self.tokens.ig, params=params)

        await self._loop(body)


def visit_bundle(pid: str, n: int) -> dict[str, Any]:
    """A GP system's transaction: an encounter, two observations and a condition from it."""
    enc = f"urn:uuid:{uuid.uuid4()}"
    subject = {"reference": f"Patient/{pid}"}
    day = f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}"

    def obs(code: str, display: str, value: float, unit: str) -> dict[str, Any]:
        return {"resourceType": "Observation", "status": "final", "subject": subject, "encounter": {"reference": enc},
                "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
                "effectiveDateTime": f"{day}T09:00:00Z",
                "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}

    entries = [
        {"fullUrl": enc, "resource": {"resourceType": "Encounter", "status": "finished", "subject": subject,
                                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                                "code": "AMB"},
                                      "period": {"start": f"{day}T09:00:00Z", "end": f"{day}T09:15:00Z"}},
         "request": {"method": "POST", "url": "Encounter"}},
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": obs("29463-7", "Body weight", 60 + n % 30, "kg"),
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": obs("8867-4", "Heart rate", 60 + n % 40, "/min"),
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": {
            "resourceType": "Condition", "subject": subject, "encounter": {"reference": enc},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"}]},
            "onsetDateTime": day}, "request": {"method": "POST", "url": "Condition"}},
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


_TLS = ssl.create_default_context()


def _client() -> httpx.AsyncClient:
    """A user's own client and keep-alive connection. One client shared by every user is slower (its pool is
    one lock), and a client each with its own TLS context costs tens of milliseconds each to make."""
    return httpx.AsyncClient(verify=_TLS, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))


async def drive(base: str, tokens: Tokens, pop: Population, mix: Mix, seconds: float, warmup: float = 3.0,
                on_tick: Callable[[float], Awaitable[None]] | None = None) -> Run:
    """Run every role's users at once: `warmup` seconds not reported, then `seconds` measured;
    `on_tick(elapsed)` is awaited every second of the measured part (fault modes)."""
    if warmup > 0:
        await _phase(base, tokens, pop, mix, warmup, Run(started=time.monotonic()), None)
    run = Run(started=time.monotonic())
    await _phase(base, tokens, pop, mix, seconds, run, on_tick)
    return run


async def _phase(base: str, tokens: Tokens, pop: Population, mix: Mix, seconds: float, run: Run,
                 on_tick: Callable[[float], Awaitable[None]] | None) -> None:
    driver = Driver(base, tokens, pop, run, time.monotonic() + seconds)
    tasks = [driver.nurse(k) for k in range(mix.nurses)]
    tasks += [driver.social(k, mix.social) for k in range(mix.social)]
    tasks += [driver.patient(k) for k in range(mix.patients)]
    tasks += [driver.partner(k) for k in range(mix.partners)]
    tasks += [driver.ig(k) for k in range(mix.ig)]

    async def ticker() -> None:
        while on_tick is not None and time.monotonic() < driver.deadline:
            await asyncio.sleep(1)
            await on_tick(time.monotonic() - run.started)

    await asyncio.gather(*tasks, ticker())
    run.seconds = time.monotonic() - run.started  # (until the last request in flight has its answer)


async def drive_reference(url: str, users: int, seconds: float, warmup: float = 2.0) -> tuple[OpStats, float]:
    """The same closed loops against a reference app's one URL (no token); its figures and the seconds it took."""
    if warmup > 0:
        await _reference_phase(url, users, warmup, OpStats())
    stats = OpStats()
    started = time.monotonic()
    await _reference_phase(url, users, seconds, stats)
    return stats, time.monotonic() - started


async def _reference_phase(url: str, users: int, seconds: float, stats: OpStats) -> None:
    deadline = time.monotonic() + seconds

    async def user() -> None:
        async with _client() as client:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                try:
                    resp = await client.get(url, timeout=30)
                    stats.add(time.perf_counter() - t0, resp.status_code, resp.status_code == 200, resp.text)
                except httpx.HTTPError as exc:
                    stats.add(time.perf_counter() - t0, 0, False, str(exc))

    await asyncio.gather(*(user() for _ in range(users)))
