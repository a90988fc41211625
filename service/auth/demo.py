"""Demo identities (`sharedcare demo load`, idempotent): the users of the identity issue, the partner system
client `gp-system` (its key pair in the repository's demo/ folder) and a public SMART demo app.

Every demo user's password is DEMO_PASSWORD and works only when SHAREDCARE_DEMO=1 (`demo_only`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import lru_cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

from service.auth.identities import (
    CEILINGS,
    SYSTEM_CEILING,
    Client,
    User,
    hash_password,
    upsert_client,
    upsert_user,
)
from service.auth.tables import auth_user
from service.config import PROJECT_ROOT
from service.demo.records import ORGS, PRACTITIONERS

DEMO_PASSWORD = "sharedcare-demo"
DEMO_DIR = PROJECT_ROOT / "demo"
DEMO_APP_REDIRECTS = ("http://127.0.0.1:8765/callback", "http://localhost:8765/callback")
ROLES = {"nurse.nina": {"clinician"}, "social.sam": {"social-care"}, "coord.cara": {"coordinator"},
         "gp.gary": {"clinician"}, "ward.wes": {"clinician"}}


def _ods(org_id: str) -> str:
    return ORGS[org_id][1]


def extra_records() -> list[dict[str, Any]]:
    """Practitioner records for the IG lead and the administrator (the others are in service/demo/records.py)."""
    return [
        {"resourceType": "Practitioner", "id": "prac-iris", "active": True,
         "name": [{"given": ["Iris"], "family": "Governance"}]},
        {"resourceType": "PractitionerRole", "id": "role-iris", "active": True,
         "practitioner": {"reference": "Practitioner/prac-iris"},
         "organization": {"reference": "Organization/org-community-trust"},
         "code": [{"text": "Information governance lead"}]},
        {"resourceType": "Practitioner", "id": "prac-ada", "active": True,
         "name": [{"given": ["Ada"], "family": "Admin"}]},
    ]


def users() -> list[User]:
    out: list[User] = []
    for username, (pid, given, family, role, _role_name, org) in PRACTITIONERS.items():
        out.append(User(username=username, kind="practitioner", scope=CEILINGS["practitioner"],
                        display_name=f"{given} {family}", fhir_user=f"Practitioner/{pid}",
                        practitioner_role=f"PractitionerRole/role-{pid[5:]}", organisation=f"Organization/{org}",
                        ods_code=_ods(org), role_code=role, roles=frozenset(ROLES.get(username, {"clinician"})),
                        demo_only=True))
    out.append(User(username="ig.iris", kind="ig", scope=CEILINGS["ig"], display_name="Iris Governance",
                    fhir_user="Practitioner/prac-iris", practitioner_role="PractitionerRole/role-iris",
                    organisation="Organization/org-community-trust", ods_code=_ods("org-community-trust"),
                    roles=frozenset({"ig-lead"}), demo_only=True))
    out.append(User(username="admin.ada", kind="admin", scope=CEILINGS["admin"], display_name="Ada Admin",
                    fhir_user="Practitioner/prac-ada", roles=frozenset({"admin"}), demo_only=True))
    out.append(User(username="patient.pat", kind="patient", scope=CEILINGS["patient"], display_name="Pat Example",
                    fhir_user="Patient/pat-pat", patient="pat-pat", roles=frozenset({"patient"}), demo_only=True))
    out.append(User(username="patient.paula", kind="patient", scope=CEILINGS["patient"], display_name="Paula Sample",
                    fhir_user="Patient/pat-paula", patient="pat-paula", roles=frozenset({"patient"}),
                    demo_only=True))
    out.append(User(username="carer.carl", kind="relatedPerson", scope=CEILINGS["relatedPerson"],
                    display_name="Carl Example", fhir_user="RelatedPerson/rp-carl", patient="pat-pat",
                    roles=frozenset({"carer"}), demo_only=True))
    return out


def clients() -> list[Client]:
    jwks = json.loads((DEMO_DIR / "gp-system.jwks.json").read_text())
    return [
        Client(client_id="gp-system", name="Meadow Lane Surgery GP system", auth_method="private_key_jwt",
               grant_types=("client_credentials",), redirect_uris=(), scope=SYSTEM_CEILING,
               organisation="Organization/org-gp-practice", ods_code=_ods("org-gp-practice"), jwks=jwks),
        Client(client_id="demo-app", name="Shared care demo app", auth_method="none",
               grant_types=("authorization_code", "refresh_token"), redirect_uris=DEMO_APP_REDIRECTS,
               scope="patient/*.cruds user/*.cruds launch/patient openid fhirUser offline_access online_access"),
    ]


@lru_cache(maxsize=1)
def _demo_hash() -> str:
    return hash_password(DEMO_PASSWORD)  # once per process: argon2 is deliberately slow


def load_identities(services: Any) -> dict[str, int]:
    from service.demo.loader import write_records

    hasher = PasswordHasher()
    counts = {"identities": 0, "clients": 0}
    write_records(services, extra_records())
    with services.db.write() as conn:
        for user in users():
            row = conn.execute(auth_user.select().where(auth_user.c.username == user.username)).first()
            if row is None or not row.password_hash:
                upsert_user(conn, user, _demo_hash())
            else:
                # Loading again never undoes an operator's changes: a password set with `sharedcare user passwd`
                # (no longer demo-only) and a disabled account stay as they are.
                try:
                    still_demo = hasher.verify(row.password_hash, DEMO_PASSWORD)
                except VerificationError:
                    still_demo = False
                kept = replace(user, active=row.active, demo_only=user.demo_only if still_demo else row.demo_only)
                upsert_user(conn, kept, None, keep_password=True)
            counts["identities"] += 1
        for client in clients():
            upsert_client(conn, client)
            counts["clients"] += 1
    return counts

