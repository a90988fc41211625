"""`sharedcare user add|list|passwd|disable`: people who sign in (professionals, patients, carers, IG, admin).

The password is read from stdin (`--password-stdin`) or asked for on a terminal; there are no defaults.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from service.commands._auth_common import fail, services


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("user", help="user accounts")
    usub = p.add_subparsers(dest="user_command", required=True)
    add = usub.add_parser("add", help="add or update a user")
    add.add_argument("username")
    add.add_argument("--kind", required=True, choices=["practitioner", "patient", "relatedPerson", "admin", "ig"])
    add.add_argument("--name", help="display name")
    add.add_argument("--fhir-user", help="Practitioner/x, Patient/y or RelatedPerson/z")
    add.add_argument("--practitioner-role", help="PractitionerRole/r")
    add.add_argument("--organisation", help="Organization/o")
    add.add_argument("--ods", help="the organisation's ODS code")
    add.add_argument("--role-code", help="SDS job role code, e.g. R8001")
    add.add_argument("--role", action="append", default=[], help="service role (repeatable): clinician, "
                     "social-care, coordinator, ig-lead, admin, patient, carer")
    add.add_argument("--patient", help="the Patient id (patients: their own; carers: the person they care for)")
    add.add_argument("--scope", help="the most this user may be granted (default: by kind)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--no-password", action="store_true", help="no password (signs in through an external issuer)")
    add.set_defaults(func=add_user)
    ls = usub.add_parser("list", help="list users")
    ls.set_defaults(func=list_users)
    pw = usub.add_parser("passwd", help="set a user's password")
    pw.add_argument("username")
    pw.add_argument("--password-stdin", action="store_true")
    pw.set_defaults(func=passwd)
    dis = usub.add_parser("disable", help="disable a user (their refresh tokens stop working)")
    dis.add_argument("username")
    dis.set_defaults(func=disable)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the passwords differ")
    return first


def add_user(args: argparse.Namespace) -> int:
    from service.auth.identities import CEILINGS, DEFAULT_ROLES, User, hash_password, upsert_user
    from service.auth.scopes import ScopeError, ScopeSet

    if args.kind in ("patient", "relatedPerson") and not args.patient:
        return fail(f"a {args.kind} user needs --patient")
    if args.kind == "practitioner" and not (args.fhir_user and args.organisation):
        return fail("a practitioner needs --fhir-user Practitioner/... and --organisation Organization/...")
    fhir_user = args.fhir_user or ({"patient": f"Patient/{args.patient}"}.get(args.kind))
    scope = args.scope or CEILINGS[args.kind]
    try:
        ScopeSet.parse(scope)
    except ScopeError as exc:
        return fail(str(exc))
    roles = frozenset(args.role) or frozenset({DEFAULT_ROLES.get(args.kind, "clinician")})
    user = User(username=args.username, kind=args.kind, scope=scope, display_name=args.name, fhir_user=fhir_user,
                practitioner_role=args.practitioner_role, organisation=args.organisation, ods_code=args.ods,
                role_code=args.role_code, roles=roles, patient=args.patient)
    try:
        password_hash = None if args.no_password else hash_password(_read_password(args.password_stdin))
    except ValueError as exc:
        return fail(str(exc))
    svc = services()
    with svc.db.write() as conn:
        upsert_user(conn, user, password_hash)
    print(f"user {args.username} saved ({args.kind}; may have: {scope})", file=sys.stderr)
    return 0


def list_users(args: argparse.Namespace) -> int:
    from service.auth.identities import list_users as all_users

    svc = services()
    with svc.db.read() as conn:
        for u in all_users(conn):
            print("\t".join([u.username, u.kind, u.fhir_user or "-", u.organisation or "-", u.ods_code or "-",
                             u.role_code or "-", ",".join(sorted(u.roles)), "active" if u.active else "disabled"]))
    return 0


def passwd(args: argparse.Namespace) -> int:
    from service.auth.identities import hash_password
    from service.auth.tables import auth_user

    try:
        h = hash_password(_read_password(args.password_stdin))
    except ValueError as exc:
        return fail(str(exc))
    svc = services()
    with svc.db.write() as conn:
        n = conn.execute(auth_user.update().where(auth_user.c.username == args.username)
                         .values(password_hash=h, demo_only=False)).rowcount
    return 0 if n else fail(f"there is no user {args.username!r}")


def disable(args: argparse.Namespace) -> int:
    from service.auth.tables import auth_user

    svc = services()
    with svc.db.write() as conn:
        n = conn.execute(auth_user.update().where(auth_user.c.username == args.username)
                         .values(active=False)).rowcount
    return 0 if n else fail(f"there is no user {args.username!r}")
