"""The Host allow-list (KAZRU_ALLOWED_HOSTS): a request that names any other Host is refused before routing.

DNS rebinding: a page on attacker.example re-points its own name at 127.0.0.1, and its script then talks
to a local run as a same-origin page would (no Origin to refuse). Its requests still say
`Host: attacker.example`, which is what this refuses. Pure ASGI, so streamed bodies stay streamed.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from kazru.domain import errors
from services.gateway.http_errors import error_response

ANY_HOST = "*"
# RFC 9110 §15.5.20: the request was directed at a server that is not configured to answer for it.
MISDIRECTED_STATUS = 421


def split_host(host: str) -> tuple[str, str | None]:
    """`name[:port]` as (lower-case name, port or None); an IPv6 name keeps its brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host.partition("]")
        return name + "]", rest[1:] if rest.startswith(":") else None
    name, colon, port = host.rpartition(":")
    return (name, port) if colon and port.isdigit() else (host, None)


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Whether a Host header names an allowed host; an allowed entry without a port allows any port."""
    name, port = split_host(host)
    for entry in allowed:
        if entry == ANY_HOST:
            return True
        allowed_name, allowed_port = split_host(entry)
        if name and name == allowed_name and allowed_port in (None, port):
            return True
    return False


class AllowedHosts:
    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]):
        self._app = app
        self._allowed = allowed
        self._any = ANY_HOST in allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._any:
            await self._app(scope, receive, send)
            return
        host = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"host"), "")
        if host_allowed(host, self._allowed):
            await self._app(scope, receive, send)
            return
        refusal = errors.PermissionDenied(
            f"this server does not answer for the host '{host[:100]}'; allowed: {', '.join(self._allowed)} "
            "(KAZRU_ALLOWED_HOSTS)",
            code="HOST_NOT_ALLOWED",
        )
        openai = scope["path"].startswith("/v1/")
        await error_response(refusal, MISDIRECTED_STATUS, openai=openai)(scope, receive, send)
