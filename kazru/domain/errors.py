"""Domain errors. They know nothing of gRPC or HTTP: `kazru.grpc.errors` and the
gateway's HTTP handler map them, each in one place. Which exceptions of a driver mean an
outage (a KazruError UNAVAILABLE) is said in `kazru.adapters.outages`, which knows the drivers.

Every error carries a stable `code` (an ErrorInfo reason such as
"UPLOAD_TOO_LARGE"), a human message, and optional details.
"""

from __future__ import annotations

from enum import Enum


class Kind(Enum):
    """The class of failure; decides the HTTP status and gRPC code."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    GONE = "GONE"
    TOO_LARGE = "TOO_LARGE"
    UNSUPPORTED_MEDIA = "UNSUPPORTED_MEDIA"
    # Well-formed, but contradicts what the same request said before (HTTP 422).
    UNPROCESSABLE = "UNPROCESSABLE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


class KazruError(Exception):
    kind: Kind = Kind.INTERNAL
    default_code: str = "INTERNAL"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = {k: str(v) for k, v in (details or {}).items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}: {self.message})"


class InvalidArgument(KazruError):
    kind, default_code = Kind.INVALID_ARGUMENT, "INVALID_ARGUMENT"


class Unauthenticated(KazruError):
    kind, default_code = Kind.UNAUTHENTICATED, "UNAUTHENTICATED"


class PermissionDenied(KazruError):
    kind, default_code = Kind.PERMISSION_DENIED, "PERMISSION_DENIED"


class NotFound(KazruError):
    kind, default_code = Kind.NOT_FOUND, "NOT_FOUND"


class FailedPrecondition(KazruError):
    kind, default_code = Kind.FAILED_PRECONDITION, "FAILED_PRECONDITION"


class Gone(KazruError):
    kind, default_code = Kind.GONE, "GONE"


class UploadTooLarge(KazruError):
    kind, default_code = Kind.TOO_LARGE, "UPLOAD_TOO_LARGE"


class UnsupportedMedia(KazruError):
    kind, default_code = Kind.UNSUPPORTED_MEDIA, "UNSUPPORTED_MEDIA"


class Unprocessable(KazruError):
    kind, default_code = Kind.UNPROCESSABLE, "UNPROCESSABLE"


# Detail of a RateLimited error: whole seconds until a request will be accepted.
RETRY_AFTER_DETAIL = "retry_after_seconds"


class RateLimited(KazruError):
    """Too many requests of one kind; details[RETRY_AFTER_DETAIL] says when to try again."""

    kind, default_code = Kind.RESOURCE_EXHAUSTED, "RATE_LIMITED"


class Unavailable(KazruError):
    kind, default_code = Kind.UNAVAILABLE, "UNAVAILABLE"


class Internal(KazruError):
    kind, default_code = Kind.INTERNAL, "INTERNAL"


BY_KIND: dict[Kind, type[KazruError]] = {
    cls.kind: cls
    for cls in (
        InvalidArgument,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        FailedPrecondition,
        Gone,
        UploadTooLarge,
        UnsupportedMedia,
        Unprocessable,
        RateLimited,
        Unavailable,
        Internal,
    )
}
