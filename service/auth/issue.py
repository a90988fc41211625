"""Issuing access tokens directly (operators, scripts and tests): `sharedcare token` and test fixtures.

Without a scope, a token carries everything the identity may have: for a user, their ceiling's user/ and
system/ scopes, or, with a patient in context, its patient/ scopes; for a client, its registered scopes.
"""

from __future__ import annotations

from typing import Any

from service.auth.identities import Client, User, get_client, get_user
from service.auth.scopes import ScopeSet


class IssueError(ValueError):
    pass


def _layer(services: Any) -> Any:
    return services.auth


def scopes_for_user(user: User, scope: str | None, patient: str | None) -> ScopeSet:
    ceiling = user.ceiling
    if scope:
        requested = ScopeSet.parse(scope)
    elif patient:
        requested = ScopeSet(tuple(s for s in ceiling.resource if s.context == "patient"), frozenset({"launch/patient"}))
    else:
        requested = ScopeSet(tuple(s for s in ceiling.resource if s.context != "patient"), frozenset())
    granted = ceiling.grant(requested)
    if not patient:
        granted = granted.without_context("patient")
    if not granted.resource:
        raise IssueError(f"none of the requested scopes ({requested.text() or 'none'}) may be granted to "
                         f"{user.username} (may have: {user.scope})" +
                         ("" if patient else "; patient/ scopes need --patient"))
    return granted


def token_for_identity(services: Any, user: User, *, scope: str | None = None, patient: str | None = None,
                       client_id: str = "sharedcare-cli", ttl: int | None = None) -> str:
    if user.kind in ("patient", "relatedPerson"):
        if patient and patient != user.patient:
            raise IssueError(f"{user.username} can only have their own patient ({user.patient}) in context")
        patient = user.patient
    granted = scopes_for_user(user, scope, patient)
    token, _ = _layer(services).tokens.access_token(scope=granted, client_id=client_id, user=user, patient=patient,
                                                    ttl=ttl)
    return token


def token_for_user(services: Any, username: str, *, scope: str | None = None, patient: str | None = None,
                   ttl: int | None = None) -> str:
    with services.db.read() as conn:
        user = get_user(conn, username)
        if user is None or not user.active:
            raise IssueError(f"there is no active user {username!r}")
        if patient and user.kind not in ("patient", "relatedPerson"):
            from service.repository import Repository

            if Repository.internal(services, conn).get("Patient", patient) is None:
                raise IssueError(f"there is no Patient with id {patient!r}")
    return token_for_identity(services, user, scope=scope, patient=patient, ttl=ttl)


def token_for_client(services: Any, client_id: str, *, scope: str | None = None, ttl: int | None = None) -> str:
    with services.db.read() as conn:
        client: Client | None = get_client(conn, client_id)
    if client is None:
        raise IssueError(f"there is no active client {client_id!r}")
    requested = ScopeSet.parse(scope) if scope else client.ceiling
    granted = client.ceiling.grant(ScopeSet(requested.resource, frozenset()))
    if not granted.resource:
        raise IssueError(f"none of the requested scopes may be granted to {client_id} (may have: {client.scope})")
    token, _ = _layer(services).tokens.access_token(scope=granted, client_id=client.client_id, client=client, ttl=ttl)
    return token
