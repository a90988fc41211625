"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
def healthz() -> JSONResponse:
    return JSONResponse({"status": "alive"})


@router.get("/readyz", include_in_schema=False)
def readyz(request: Request) -> JSONResponse:
    if request.app.state.services.db.ping():
        return JSONResponse({"status": "ready", "database": "reachable"})
    return JSONResponse({"status": "not ready", "database": "unreachable"}, status_code=503)
