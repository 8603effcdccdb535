"""The one HTTP mapping of errors: a domain error's kind → its status, the two bodies it is written in,
and the handlers that turn whatever a route raised into one of them.

/api/v1 answers {"error": {"code", "message", "details"}}; the OpenAI-compatible routes under /v1 answer
OpenAI's {"error": {"message", "type", "param", "code"}}, with the same status and our error code
(their route class, services/gateway/openai_api.py, catches first).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kazru.adapters import outages
from kazru.domain import errors
from kazru.domain.errors import KazruError, Kind

log = logging.getLogger(__name__)

HTTP_STATUS: dict[Kind, int] = {
    Kind.INVALID_ARGUMENT: 400,
    Kind.UNAUTHENTICATED: 401,
    Kind.PERMISSION_DENIED: 403,
    Kind.NOT_FOUND: 404,
    Kind.FAILED_PRECONDITION: 409,
    Kind.GONE: 410,
    Kind.TOO_LARGE: 413,
    Kind.UNSUPPORTED_MEDIA: 415,
    Kind.UNPROCESSABLE: 422,
    Kind.RESOURCE_EXHAUSTED: 429,
    Kind.UNAVAILABLE: 503,
    Kind.INTERNAL: 500,
}

# The detail naming the request field an error is about (OpenAI's `param`).
PARAM_DETAIL = "param"


def writable(text: str) -> str:
    """`text` as UTF-8 can carry it: a message that quotes the request (a label, a language) may hold a lone
    surrogate from a JSON escape ("\\ud800"), which would fail the answer itself; it is written escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_body(error: KazruError) -> dict:
    details = {name: writable(value) for name, value in error.details.items()}
    return {"error": {"code": error.code, "message": writable(error.message), "details": details}}


def openai_error_body(error: KazruError, status: int) -> dict:
    kind = "server_error" if status >= 500 else "rate_limit_error" if status == 429 else "invalid_request_error"
    param = error.details.get(PARAM_DETAIL)
    return {"error": {"message": writable(error.message), "type": kind, "param": param, "code": error.code}}


def error_response(
    error: KazruError, status: int | None = None, openai: bool = False, headers: dict[str, str] | None = None
) -> JSONResponse:
    """`status`: when the error's kind alone does not say it (a job that failed after its upload, a range
    outside the audio, an unknown path)."""
    status = status or HTTP_STATUS[error.kind]
    headers = dict(headers or {})
    retry_after = error.details.get(errors.RETRY_AFTER_DETAIL)
    if retry_after:
        headers["Retry-After"] = retry_after
    body = openai_error_body(error, status) if openai else error_body(error)
    return JSONResponse(body, status_code=status, headers=headers or None)


def validation_error(error: RequestValidationError) -> errors.InvalidArgument:
    """FastAPI's refusal of a parameter or body, as our 400: the first problem, where it is."""
    first = error.errors()[0] if error.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return errors.InvalidArgument(f"{where}: {first.get('msg', 'invalid request')}", code="INVALID_REQUEST")


def unexpected_error(error: Exception, path: str) -> KazruError:
    """A dependency that is down is 503 with its code; anything else is logged and 500, without its text."""
    outage = outages.from_infrastructure(error)
    if outage is not None:
        log.warning("dependency unavailable", extra={"path": path, "error_code": outage.code})
        return outage
    log.exception("unhandled error", extra={"path": path})
    return errors.Internal("internal error")


def install_handlers(app: FastAPI) -> None:
    """Every error of the app's routes in our body: domain errors, refused parameters, unknown paths or
    methods, and anything unexpected."""

    @app.exception_handler(KazruError)
    async def on_domain_error(request: Request, error: KazruError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(error))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.status_code, "HTTP_ERROR")
        return error_response(KazruError(str(error.detail), code=code), status=error.status_code)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        return error_response(unexpected_error(error, request.url.path))
