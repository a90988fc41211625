"""The answers the repository gives for what the caller may not know exists: the same for a hidden resource as
for one that never existed (status, body and headers), so no path tells them apart."""

from __future__ import annotations

from service.fhir.outcome import OperationOutcomeError, gone, not_found


def missing(rtype: str, rid: str) -> OperationOutcomeError:
    return not_found(f"{rtype}/{rid} is not known")


def missing_version(rtype: str, rid: str, version: str) -> OperationOutcomeError:
    if not version.isdigit():
        return not_found(f"{rtype}/{rid} has no version {version!r} (versions are whole numbers)")
    return not_found(f"{rtype}/{rid} has no version {version}")


def deletion(rtype: str, rid: str, version: int, etag: str) -> OperationOutcomeError:
    err = gone(f"{rtype}/{rid} version {version} is a deletion")
    err.headers["ETag"] = etag
    return err


def no_client_ids(rtype: str, rid: str) -> OperationOutcomeError:
    """PUT at an id the caller may not see anything at (it does not exist, or it is hidden from them)."""
    return OperationOutcomeError(
        405, "not-supported", f"There is no {rtype}/{rid} to update, and creating a resource at an id of the "
        f"client's choosing is reserved for administrators and data migration: create it with POST {rtype}",
        headers={"Allow": "GET, DELETE"})


def deleted(rtype: str, rid: str, etag: str) -> OperationOutcomeError:
    err = gone(f"{rtype}/{rid} was deleted")
    err.headers["ETag"] = etag
    return err
