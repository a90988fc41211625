"""Identity and access: the embedded SMART on FHIR authorisation server (Authlib), bearer-token
authentication of every FHIR request, and the scope guard.

The bootstrap builds it with `build(settings)`: the `AuthLayer` (keys, tokens, authorisation server, the scope
guard the access policy composes on) and the `Authenticator` (FhirRequest -> RequestContext, 401 without a
valid token); `capability_security` is the CapabilityStatement's SMART `oauth-uris`; `routes_installer` adds
the HTTP routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.auth.authenticate import Authenticator
from service.auth.guard import ScopeGuard
from service.auth.keys import KeyStore
from service.auth.oauth import SharedCareAuthServer
from service.auth.throttle import ApiThrottle
from service.auth.tokens import TokenService

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


@dataclass
class AuthLayer:
    keys: KeyStore
    tokens: TokenService
    server: SharedCareAuthServer
    guard: ScopeGuard


def capability_security(services: Any) -> dict[str, Any]:
    base = services.settings.base_url
    return {
        "cors": bool(services.settings.cors_origins),
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR"}],
                     "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"}],
        "extension": [{"url": OAUTH_URIS, "extension": [
            {"url": "authorize", "valueUri": f"{base}/auth/authorize"},
            {"url": "token", "valueUri": f"{base}/auth/token"},
            {"url": "revoke", "valueUri": f"{base}/auth/revoke"},
            {"url": "introspect", "valueUri": f"{base}/auth/introspect"},
        ]}],
        "description": "Every request needs a bearer token (SMART App Launch 2.0 or Backend Services); "
                       f"discovery at {services.settings.fhir_base}/.well-known/smart-configuration",
    }


def build(settings: Any) -> tuple[AuthLayer, Authenticator]:
    """The identity layer for these settings: keys (made on first use only in demo mode; otherwise from the shared
    keys directory, made by `sharedcare keys generate`), tokens, the authorisation server."""
    from service.auth.keys import retention_for
    from service.secrets import server_secret

    keys = KeyStore(settings.keys_dir, retention_for(settings))
    keys.ensure(create=settings.demo)
    server_secret(settings)  # (configured, or made in demo mode: checked now rather than on the first search)
    tokens = TokenService(settings, keys)
    server = SharedCareAuthServer(settings, tokens)
    guard = ScopeGuard(realm=settings.fhir_base)
    return AuthLayer(keys, tokens, server, guard), Authenticator(tokens, settings.fhir_base,
                                                                 ApiThrottle(settings.api_rate_per_minute))


def routes_installer(services: Any) -> Any:
    """The authorisation server's HTTP routes (and CORS), for `create_app`."""

    def install_routes(app: Any) -> None:
        from service.auth.routes import build_router

        settings = services.settings
        router = build_router(services, services.auth.server)
        before = len(app.router.routes)
        app.include_router(router)
        # Our routes go first: /fhir/.well-known/... must win over the FHIR catch-all route.
        added = app.router.routes[before:]
        del app.router.routes[before:]
        app.router.routes[0:0] = added
        if settings.cors_origins:
            from starlette.middleware.cors import CORSMiddleware

            app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
                               allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                               allow_headers=["Authorization", "Content-Type", "If-Match", "If-None-Exist",
                                              "Prefer", "X-Purpose-Of-Use", "X-Break-Glass-Reason"],
                               expose_headers=["ETag", "Location", "Last-Modified", "WWW-Authenticate"])

    return install_routes
