"""Which exceptions of the database, bus and object-store drivers mean an outage: the domain's
UNAVAILABLE (HTTP 503, gRPC UNAVAILABLE) rather than an internal error.

Kept out of `kazru.domain.errors`, which imports no driver; the drivers are imported when the
function is first called, as before.
"""

from __future__ import annotations

from kazru.domain.errors import KazruError, Unavailable


def from_infrastructure(error: Exception) -> KazruError | None:
    """A dependency outage (database, bus, object store) as the domain's UNAVAILABLE, else None.

    Both transport adapters call this for exceptions that are not KazruError, so a
    restarting PostgreSQL reads as 503/UNAVAILABLE rather than 500/INTERNAL.
    """
    import minio.error
    import nats.errors
    import sqlalchemy.exc
    import urllib3.exceptions

    if isinstance(error, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return Unavailable("the database is unavailable; try again", code="DATABASE_UNAVAILABLE")
    if isinstance(error, nats.errors.Error):
        return Unavailable("the message bus is unavailable; try again", code="BUS_UNAVAILABLE")
    if isinstance(error, urllib3.exceptions.HTTPError | minio.error.MinioException):
        return Unavailable("object storage is unavailable; try again", code="STORAGE_UNAVAILABLE")
    return None
