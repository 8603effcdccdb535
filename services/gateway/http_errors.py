"""The one HTTP mapping of errors: a domain error's kind → its status, and the two bodies it is written in.

/api/v1 answers {"error": {"code", "message", "details"}}; the OpenAI-compatible routes under /v1 answer
OpenAI's {"error": {"message", "type", "param", "code"}}, with the same status and our error code.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from kazru import errors
from kazru.errors import KazruError, Kind

HTTP_STATUS: dict[Kind, int] = {
    Kind.INVALID_ARGUMENT: 400,
    Kind.UNAUTHENTICATED: 401,
    Kind.PERMISSION_DENIED: 403,
    Kind.NOT_FOUND: 404,
    Kind.FAILED_PRECONDITION: 409,
    Kind.GONE: 410,
    Kind.TOO_LARGE: 413,
    Kind.UNSUPPORTED_MEDIA: 415,
    Kind.RESOURCE_EXHAUSTED: 429,
    Kind.UNAVAILABLE: 503,
    Kind.INTERNAL: 500,
}

# The detail naming the request field an error is about (OpenAI's `param`).
PARAM_DETAIL = "param"


def error_body(error: KazruError) -> dict:
    return {"error": {"code": error.code, "message": error.message, "details": error.details}}


def openai_error_body(error: KazruError, status: int) -> dict:
    kind = "server_error" if status >= 500 else "rate_limit_error" if status == 429 else "invalid_request_error"
    param = error.details.get(PARAM_DETAIL)
    return {"error": {"message": error.message, "type": kind, "param": param, "code": error.code}}


def error_response(error: KazruError, status: int | None = None, openai: bool = False) -> JSONResponse:
    """`status`: when the error's kind alone does not say it (a job that failed after its upload)."""
    status = status or HTTP_STATUS[error.kind]
    retry_after = error.details.get(errors.RETRY_AFTER_DETAIL)
    headers = {"Retry-After": retry_after} if retry_after else None
    body = openai_error_body(error, status) if openai else error_body(error)
    return JSONResponse(body, status_code=status, headers=headers)
