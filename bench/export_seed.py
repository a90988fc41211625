"""A large population for the export benchmark, fast: a template written once through the real write path, then
copied inside PostgreSQL.

1. The template: `patients` people, each a Patient (a valid, unique NHS number) with 10 care plans, encounters,
   conditions and observations (bench.search_bench's shapes), one transaction Bundle per 10 people, loaded by
   `sharedcare import` in child processes: the repository's create path with validation, write rules, ownership,
   search indexing and care relationships. Every 50th person is on the National Data Opt-out list.
2. Copies: `grow(services, copies)` multiplies the template inside PostgreSQL with `INSERT ... SELECT` into every
   table a write fills (`resource`, `resource_version`, the index tables `sp_*` with `sp_compartment` and
   `sp_text`, `care_relationship`), copy k renaming every id the template holds (`<uuid>` -> `<uuid>.k`, in the
   rows, their owners, their references and inside the stored JSON) and giving each copied person a new valid NHS
   number (in the Patient, its identifier index row and its words; an opted-out person's copy is opted out too).
   So the copies are what the write path would have stored for the same people under other ids, and the access
   filters (the opt-out list by NHS number, ownership, compartments) work on them as on the template.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Table, text

NHS = "https://fhir.nhs.uk/Id/nhs-number"
PER_PATIENT = 10  # other resources per person
PER_BUNDLE = 10  # people per transaction Bundle
OPT_OUT_EVERY = 50  # every 50th person of the template is on the National Data Opt-out list
UUID = "([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
SHAREDCARE = str(Path(sys.executable).parent / "sharedcare")


def nhs_numbers(start: int) -> Any:
    """Valid NHS numbers (modulus 11), in order, from nine-digit base `start`."""
    base = start
    while True:
        total = sum(int(d) * w for d, w in zip(f"{base:09d}", range(10, 1, -1), strict=True))
        check = (11 - total % 11) % 11
        if check != 10:
            yield f"{base:09d}{check}"
        base += 1


def _bundle(people: list[tuple[int, str]]) -> bytes:
    from bench.search_bench import _others, _patient

    entries = []
    for i, nhs in people:
        full = f"urn:uuid:{uuid.uuid4()}"
        patient = _patient(i)
        patient["identifier"] = [{"system": NHS, "value": nhs}]
        entries.append({"fullUrl": full, "resource": patient, "request": {"method": "POST", "url": "Patient"}})
        for res in _others("PID", i, PER_PATIENT):
            res["subject"] = {"reference": full}
            if res["resourceType"] == "Encounter":  # (the generator's end may precede its start: per-1 refuses it)
                res["period"]["end"] = res["period"]["start"].replace("T09:", "T10:")
            entries.append({"resource": res, "request": {"method": "POST", "url": res["resourceType"]}})
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def template(services: Any, env: dict[str, str], patients: int, log: Any) -> int:
    """Write the template through `sharedcare import` (two processes), opt out every 50th person, and record the
    template's people in `bench_patient` (id, NHS number). Returns how many resources were written."""
    from service.policy import optout

    numbers = nhs_numbers(400_000_000)
    people = [(i, next(numbers)) for i in range(patients)]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [Path(tmp) / "a", Path(tmp) / "b"]
        for d in dirs:
            d.mkdir()
        for n, s in enumerate(range(0, patients, PER_BUNDLE)):
            (dirs[n % 2] / f"{n:06d}.json").write_bytes(_bundle(people[s:s + PER_BUNDLE]))
        procs = [subprocess.Popen([SHAREDCARE, "import", str(d)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for d in dirs]
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"sharedcare import failed: {err.decode()[-2000:]}")
    with services.db.write() as conn:
        optout.import_numbers(conn, [nhs for i, nhs in people if i % OPT_OUT_EVERY == 0], source="bench")
        conn.exec_driver_sql("CREATE TABLE bench_patient (pid text PRIMARY KEY, nhs text NOT NULL)")
        conn.exec_driver_sql("INSERT INTO bench_patient SELECT res_id, code FROM sp_token WHERE res_type = "
                             f"'Patient' AND param = 'identifier' AND system = '{NHS}'")
        conn.exec_driver_sql("CREATE TABLE bench_nhs (pid text, k int, old text, new text, PRIMARY KEY (pid, k))")
        conn.exec_driver_sql("CREATE TABLE bench_state (copies int NOT NULL, next_nhs bigint NOT NULL)")
        conn.execute(text("INSERT INTO bench_state VALUES (0, :n)"), {"n": int(next(numbers)[:9]) + 1})
        written = conn.exec_driver_sql("SELECT count(*) FROM resource r JOIN bench_patient p "
                                       "ON r.patient_id = p.pid").scalar_one()
        foreign = conn.exec_driver_sql(
            "SELECT count(*) FROM sp_reference f JOIN bench_patient p ON f.patient_id = p.pid WHERE f.target_id "
            "IS NOT NULL AND NOT EXISTS (SELECT 1 FROM resource t JOIN bench_patient q ON t.patient_id = q.pid "
            "WHERE t.res_type = f.target_type AND t.res_id = f.target_id)").scalar_one()
    if foreign:  # (a copy renames every id it holds: the template may refer only to itself)
        raise RuntimeError(f"the template refers to {foreign} resources outside itself")
    log(f"   template: {written} resources of {patients} people through `sharedcare import` "
        f"({time.perf_counter() - started:.0f}s)")
    return int(written)


def _renamed(column: str, words: bool = False) -> str:
    if words:  # (sp_text: an id's words, "<8> <4> <4> <4> <12>", then the copy's number as a word)
        return (f"regexp_replace({column}, '([0-9a-f]{{8}} [0-9a-f]{{4}} [0-9a-f]{{4}} [0-9a-f]{{4}} [0-9a-f]{{12}})', "
                "'\\1 ' || g.k, 'g')")
    return f"regexp_replace({column}, '{UUID}', '\\1.' || g.k, 'g')"


def _copy_sql(table: Table) -> str:
    """INSERT ... SELECT of the template's rows of `table` for copies g.k (ids renamed, NHS numbers replaced)."""
    cols = [c.name for c in table.columns if not (c.name == "seq" and table.name == "resource_version")]
    exprs = []
    for c in cols:
        if c in ("res_id", "patient_id", "source_id"):
            exprs.append(f"t.{c} || '.' || g.k")
        elif c in ("owners", "target_id"):
            exprs.append(_renamed(f"t.{c}"))
        elif (table.name in ("resource", "resource_version") and c == "content") or table.name == "sp_text":
            # the person's new NHS number, in the Patient's JSON (as the identifier's value) and in its words
            old = "'\"value\":\"' || m.old || '\"'" if table.name != "sp_text" else "m.old"
            new = "'\"value\":\"' || m.new || '\"'" if table.name != "sp_text" else "m.new"
            renamed = _renamed("t." + c, words=table.name == "sp_text")
            exprs.append(f"CASE WHEN m.old IS NULL THEN {renamed} ELSE replace({renamed}, {old}, {new}) END")
        elif table.name == "sp_token" and c == "code":
            exprs.append(f"CASE WHEN t.param = 'identifier' AND t.system = '{NHS}' AND m.new IS NOT NULL "
                         "THEN m.new ELSE t.code END")
        else:
            exprs.append(f"t.{c}")
    join = ("LEFT JOIN bench_nhs m ON t.res_type = 'Patient' AND m.pid = t.res_id AND m.k = g.k"
            if table.name in ("resource", "resource_version", "sp_text", "sp_token") else "")
    return (f"INSERT INTO {table.name} ({', '.join(cols)}) SELECT {', '.join(exprs)} FROM {table.name} t "
            f"JOIN bench_patient p ON t.patient_id = p.pid CROSS JOIN generate_series(CAST(:k0 AS int), CAST(:k1 AS int)) g(k) {join}")


def tables() -> list[Table]:
    from service.policy.tables import care_relationship
    from service.search import indexer
    from service.storage.tables import resource, resource_version

    return [resource, resource_version, *indexer.TABLES.values(), care_relationship]


def grow(services: Any, copies: int, log: Any) -> int:
    """Add copies of the template until there are `copies` of them (besides the template itself), table by table
    (10 copies per transaction), then VACUUM ANALYZE. Returns the patient-data resources stored."""
    with services.db.read() as conn:
        have, next_nhs = conn.exec_driver_sql("SELECT copies, next_nhs FROM bench_state").one()
        pids = [(r[0], r[1]) for r in conn.exec_driver_sql("SELECT pid, nhs FROM bench_patient ORDER BY pid")]
    numbers = nhs_numbers(next_nhs)
    started = time.perf_counter()
    statements = [text(_copy_sql(t)) for t in tables()]
    for k0 in range(have + 1, copies + 1, 10):
        k1 = min(copies, k0 + 9)
        mapping = [{"pid": pid, "k": k, "old": nhs, "new": next(numbers)} for k in range(k0, k1 + 1)
                   for pid, nhs in pids]
        with services.db.write() as conn:
            conn.execute(text("INSERT INTO bench_nhs VALUES (:pid, :k, :old, :new)"), mapping)
            for stmt in statements:
                conn.execute(stmt, {"k0": k0, "k1": k1})
            conn.exec_driver_sql(  # (the copies of opted-out people are opted out too)
                "INSERT INTO data_opt_out (nhs_number, source, recorded_us) SELECT m.new, o.source, o.recorded_us "
                f"FROM bench_nhs m JOIN data_opt_out o ON o.nhs_number = m.old WHERE m.k BETWEEN {k0} AND {k1}")
            conn.execute(text("UPDATE bench_state SET copies = :c, next_nhs = :n"),
                         {"c": k1, "n": int(next(numbers)[:9]) + 1})
        log(f"   copies {k0}-{k1} of the template written ({time.perf_counter() - started:.0f}s)")
    with services.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")  # (as autovacuum would: visibility map set, statistics current)
        return int(conn.exec_driver_sql("SELECT count(*) FROM resource WHERE patient_id IS NOT NULL").scalar_one())


def expected(services: Any) -> int:
    """What a research export (HRESCH) must hold: every stored resource but AuditEvents (not the record) and the
    deleted, less those of people on the National Data Opt-out list."""
    with services.db.read() as conn:
        return int(conn.exec_driver_sql(
            "SELECT count(*) FROM resource r WHERE NOT r.deleted AND r.res_type <> 'AuditEvent' AND NOT EXISTS "
            "(SELECT 1 FROM sp_token t JOIN data_opt_out o ON o.nhs_number = t.code WHERE t.res_type = 'Patient' "
            f"AND t.param = 'identifier' AND t.system = '{NHS}' AND t.res_id = r.patient_id)").scalar_one())
