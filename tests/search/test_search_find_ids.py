def test_find(client, services):
    r = client.post("/fhir/Patient", json={"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}],"name":[{"family":"Ñúñez","given":["Jo"]}]})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    from service.repository import Repository
    with services.db.read() as conn:
        s = Repository.internal(services, conn)
        assert services.search.find_ids(s, "Patient", "identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919") == [pid]
        assert services.search.find_ids(s, "Patient", "identifier=9434765919") == [pid]
        assert services.search.find_ids(s, "Patient", [("name","nunez")]) == [pid]
        assert services.search.find_ids(s, "Patient", [("identifier","x|9434765919")]) == []
    r = client.post("/fhir/Patient", json={"resourceType":"Patient"}, headers={"If-None-Exist": "identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919"})
    assert r.status_code == 200 and r.json()["id"] == pid
    r = client.delete(f"/fhir/Patient/{pid}")
    with services.db.read() as conn:
        s = Repository.internal(services, conn)
        assert services.search.find_ids(s, "Patient", "identifier=9434765919") == []
