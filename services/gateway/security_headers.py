"""Security headers on every HTTP response of the gateway (pure ASGI, so streamed bodies stay streamed).

The page loads only its own files (no inline script or style, no CDN), so its policy allows
'self' alone. The browsable API docs (Swagger UI, served by the gateway: openapi_docs.py, started from
a file) need no more: their policy differs only in what they do not use (media, forms). Checked in
Chromium by tests/e2e/test_docs_browser.py (a CSP violation is a console error there).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))  # fmt: skip
DOCS_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
))  # fmt: skip
COMMON_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # For browsers that predate frame-ancestors.
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, docs_path: str):
        self._app = app
        self._docs_path = docs_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        policy = DOCS_POLICY if scope["path"].startswith(self._docs_path) else PAGE_POLICY

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                for name, value in ((b"content-security-policy", policy.encode()), *COMMON_HEADERS):
                    if name not in present:  # a route that set its own keeps it
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, send_with_headers)
