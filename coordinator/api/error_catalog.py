"""The one place where errors become HTTP responses.

Every error body has the same shape::

    {"detail": [{"field": "body.inputs.0.dataset_id", "message": "...", "fix": "..."}]}

``field`` is a dotted path into the request (``body.…``, ``query.…``, ``path.…``) or null. A policy denial
(``PolicyDenied``) adds one entry per denying rule, each with its ``rule_id``.
Domain errors map by class through ``CATALOG``; validation errors name each offending field; a body
nested too deeply for the JSON parser is a 422 naming the nesting limit (free-form fields such as job
outputs are bounded by their models, ``MAX_OUTPUTS_DEPTH``); a database that is down or unreachable
(``OperationalError``, ``InterfaceError``: PostgreSQL restarting, a locked SQLite file) is a 503 with
``Retry-After``, saying nothing was changed (the request's transaction rolled back); anything else
unexpected is a 500 with no detail (and a logged traceback).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from coordinator.audit import log as audit_log
from coordinator.audit.chain import AuditError
from coordinator.errors import BadRequest, Conflict, CoordinatorError, Forbidden, NotFound, PolicyDenied, Unauthorized
from coordinator.policy import PolicyError
from protocols.wire.control import MAX_OUTPUTS_DEPTH as MAX_JSON_DEPTH
from protocols.wire.errors import ProtocolError

__all__ = ["CATALOG", "error_body", "install_error_handlers"]

logger = logging.getLogger(__name__)

CATALOG: dict[type[Exception], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PolicyError: 400,
    ProtocolError: 400,  # refined by each ProtocolError's status_hint (CryptoError 403, ...)
    AuditError: 500,
    IntegrityError: 409,
    DataError: 400,
}

_FIXES = {
    "missing": "add this field",
    "extra_forbidden": "remove this field; /openapi.json lists the accepted fields",
    "json_invalid": "send a valid JSON document",
    "string_pattern_mismatch": "match the pattern given in the message",
}


def error_body(message: str, field: str | None = None, fix: str | None = None) -> dict[str, Any]:
    """The JSON body of every error response."""
    return {"detail": [{"field": field, "message": message, "fix": fix}]}


def _status(exc: Exception) -> int:
    if isinstance(exc, ProtocolError):
        return exc.status_hint
    return next((CATALOG[cls] for cls in type(exc).__mro__ if cls in CATALOG), 500)


def _domain_message(exc: Exception) -> tuple[str, str | None, str | None]:
    if isinstance(exc, CoordinatorError):
        return exc.message, exc.field, exc.fix
    if isinstance(exc, IntegrityError):
        return "the request conflicts with existing data", None, "re-read the object and retry"
    if isinstance(exc, DataError):
        return "a value was refused by the database (e.g. a NUL character)", None, "remove control characters"
    if isinstance(exc, AuditError):
        return "internal error", None, None
    return str(exc), None, None


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_OBJECT = re.compile(r"/(job|dataset|partie|user)s/([^/]+)")


def _audit_refusal(request: Request, exc: Exception, status: int, message: str, field: str | None) -> None:
    """Write a refused write by an authenticated caller to the audit log as ``request.refused``.

    Refusals audited as their own event where they happen (``exc.audited``), failed authentication
    (``auth.failed``, aggregated) and reads are not written again.
    """
    principal = getattr(request.state, "principal", None)
    if (request.method not in _WRITES or principal is None or not 400 <= status < 500 or status == 401
            or getattr(exc, "audited", False)):
        return
    found = _OBJECT.search(request.url.path)
    obj = f"{found.group(1).replace('partie', 'party')}:{found.group(2)}" if found else "api"
    details = {"method": request.method, "path": request.url.path, "status": status, "field": field,
               "message": message[:300]}
    try:
        audit_log.record_alone(request.app.state.context, principal.actor, "request.refused", obj, details)
    except Exception:  # noqa: BLE001 - the caller still gets its refusal; the log says why the event is missing
        logger.exception("could not audit a refused %s %s", request.method, request.url.path)


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    status = _status(exc)
    if status >= 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
    message, field, fix = _domain_message(exc)
    _audit_refusal(request, exc, status, message, field)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = error_body(message, field, fix)
    if isinstance(exc, PolicyDenied):  # one more entry per denying rule, named by its rule id
        body["detail"] += [{"field": f, "message": f"{rule_id}: {text}", "fix": rule_fix, "rule_id": rule_id}
                           for rule_id, f, text, rule_fix in exc.denials]
    return JSONResponse(body, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def _validation_item(err: dict[str, Any]) -> dict[str, Any]:
    kind = str(err.get("type", ""))
    loc = list(err.get("loc", ()))
    if kind == "json_invalid":
        return {"field": "body", "message": f"malformed JSON: {err.get('ctx', {}).get('error', err['msg'])}",
                "fix": _FIXES[kind]}
    return {"field": _field(loc), "message": str(err.get("msg", "invalid value")),
            "fix": _FIXES.get(kind, "see /openapi.json for the expected type")}


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    items = [_validation_item(e) for e in exc.errors()]
    if items:  # a refused write by a signed-in caller is audited like any other refusal
        _audit_refusal(request, exc, 422, items[0]["message"], items[0]["field"])
    return JSONResponse({"detail": items}, status_code=422)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, RecursionError):  # FastAPI's "error parsing the body": JSON nested too deep
        body = error_body(f"the JSON body is nested too deeply to parse; request fields accept at most "
                          f"{MAX_JSON_DEPTH} levels of nesting", "body", f"flatten the body to at most "
                          f"{MAX_JSON_DEPTH} levels")
        return JSONResponse(body, status_code=422)
    return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


DB_RETRY_AFTER_S = 5


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, OperationalError | InterfaceError):  # the database is down, restarting or unreachable
        logger.error("%s %s: the database is unavailable (%s)", request.method, request.url.path,
                     type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__)
        body = error_body("the coordinator's database is unavailable; nothing was changed, retry in a few seconds",
                          None, "retry after the Retry-After seconds; if it persists, the coordinator's operator "
                                "checks that its database (TANDEM_COORD_DATABASE_URL) is running and reachable")
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(DB_RETRY_AFTER_S)})
    logger.exception("%s %s failed unexpectedly", request.method, request.url.path)
    return JSONResponse(error_body("internal error"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the catalog's handlers on ``app``."""
    handled: list[type[Exception]] = [CoordinatorError, *CATALOG]
    for cls in handled:
        app.add_exception_handler(cls, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    for cls in (OperationalError, InterfaceError):  # answered like the catalog's errors: logged in one line,
        app.add_exception_handler(cls, _on_unexpected)  # not re-raised to uvicorn as a traceback per request
    app.add_exception_handler(Exception, _on_unexpected)
