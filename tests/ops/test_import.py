"""`sharedcare import PATH`: transaction Bundles and NDJSON from a file or a folder, through the repository; a
bundle with one bad entry loads nothing of itself, a bad NDJSON line rejects that line only, and the summary and
the report name every rejected entry and why; exit 0 when all loaded, 1 when anything was rejected, 2 for a PATH
with nothing to load. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli import main
from service.config import get_settings
from tests.ops.support import nhs_number, server_env

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def _patient(nhs: str, family: str, **extra: object) -> dict[str, object]:
    return {"resourceType": "Patient", "name": [{"family": family, "given": ["Import"]}],
            "identifier": [{"system": NHS, "value": nhs}], **extra}


def _bundle(entries: list[dict[str, object]]) -> dict[str, object]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _obs(subject: str, value: object = 70) -> dict[str, object]:
    return {"resourceType": "Observation", "status": "final", "subject": {"reference": subject},
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "valueQuantity": {"value": value, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}


@pytest.fixture
def cli_env(settings, monkeypatch):  # type: ignore[no-untyped-def]
    for key, value in server_env(settings).items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _count(client, query: str) -> int:  # type: ignore[no-untyped-def]
    rtype, _, criteria = query.partition("?")
    name, _, value = criteria.partition("=")
    found = client.get(f"/fhir/{rtype}", params={name: value, "_total": "accurate", "_count": "0"})
    assert found.status_code == 200, found.text
    return int(found.json()["total"])


def test_import_loads_bundles_and_ndjson_and_reports_what_it_rejected(
        demo, client, cli_env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    good_nhs, bad_nhs, line_nhs, put_nhs = (nhs_number(x) for x in ("401023456", "401023457", "401023459",
                                                                     "401023460"))
    folder = tmp_path / "load"
    (folder / "sub").mkdir(parents=True)
    (folder / "a-good.json").write_text(json.dumps(_bundle([
        {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111", "resource": _patient(good_nhs, "Goodbundle"),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": _obs("urn:uuid:11111111-1111-4111-8111-111111111111"),
         "request": {"method": "POST", "url": "Observation"}}])))
    (folder / "b-bad.json").write_text(json.dumps(_bundle([
        {"fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222", "resource": _patient(bad_nhs, "Badbundle"),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {**_obs("urn:uuid:22222222-2222-4222-8222-222222222222"), "status": "not-a-status"},
         "request": {"method": "POST", "url": "Observation"}}])))
    (folder / "sub" / "c.ndjson").write_text("\n".join([
        json.dumps(_patient(line_nhs, "Ndjsonline")),
        json.dumps({**_obs("Patient/pat-pat"), "status": "bogus"}),
        "{not json",
        json.dumps(_patient(put_nhs, "Withanid", id="imported-with-id")),
        ""]))
    report = tmp_path / "rejected.json"
    code = main(["import", str(folder), "--report", str(report)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "import summary" in err and "resources created" in err
    assert _count(client, f"Patient?identifier={NHS}|{good_nhs}") == 1
    assert _count(client, f"Patient?identifier={NHS}|{bad_nhs}") == 0  # (nothing of the bad bundle)
    assert _count(client, f"Patient?identifier={NHS}|{line_nhs}") == 1
    assert client.get("/fhir/Patient/imported-with-id").status_code == 200
    assert _count(client, "Observation?subject.identifier=" + f"{NHS}|{good_nhs}") == 1
    rejected = json.loads(report.read_text())
    wheres = sorted(r["where"] for r in rejected)
    assert wheres == sorted([str(folder / "b-bad.json"), f"{folder / 'sub' / 'c.ndjson'}:2",
                             f"{folder / 'sub' / 'c.ndjson'}:3"]), rejected
    bad_bundle = next(r for r in rejected if r["where"].endswith("b-bad.json"))
    assert "nothing of its 2 entries loaded" in bad_bundle["reason"]
    assert "not JSON" in next(r for r in rejected if r["where"].endswith(":3"))["reason"]
    assert "b-bad.json" in err and "c.ndjson:2" in err

    # all good: exit 0; run again: the same ids are updated, not duplicated
    assert main(["import", str(folder / "sub" / "c.ndjson")]) == 1  # (its bad lines again)
    good = tmp_path / "only-good.ndjson"
    good.write_text(json.dumps(_patient(put_nhs, "Withanid", id="imported-with-id", gender="female")) + "\n")
    assert main(["import", str(good)]) == 0
    assert client.get("/fhir/Patient/imported-with-id").json()["gender"] == "female"
    assert main(["import", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["import", str(tmp_path / "empty")]) == 2
