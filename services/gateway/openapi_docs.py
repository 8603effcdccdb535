"""The OpenAPI document as clients see it, and Swagger UI served from the gateway itself.

FastAPI's own docs page loads Swagger UI from a CDN and starts it with an inline script; ours loads
the copy bundled in the `fastapi-offline` package and starts it from a file, so the page needs
nothing from outside and works under a CSP without 'unsafe-inline' scripts.
"""

from __future__ import annotations

import logging
from importlib import resources, util
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from services.gateway import api_models

log = logging.getLogger(__name__)

DOCS_PATH = "/api/v1/docs"
OPENAPI_PATH = "/api/v1/openapi.json"
# FastAPI's validation error, which this API never sends: RequestValidationError answers 400 with our body.
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")

DOCS_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>KazRu-STT Pro — HTTP API</title>
<link rel="stylesheet" href="{DOCS_PATH}/assets/swagger-ui.css">
<link rel="icon" href="{DOCS_PATH}/assets/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS_PATH}/assets/swagger-ui-bundle.js"></script>
<script src="{DOCS_PATH}/start.js"></script>
</body>
</html>
"""
MISSING_ASSETS_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>KazRu-STT Pro — HTTP API</title></head>
<body><p>Swagger UI is not installed here (<code>pip install fastapi-offline</code>).
The OpenAPI document: <a href="{OPENAPI_PATH}">{OPENAPI_PATH}</a>.</p></body></html>
"""
# "Try it out" acts as this browser's session unless an API key is given (Authorize); a session's
# writes need its CSRF token (services/gateway/csrf.py), sent here as the page sends it.
DOCS_START = f""""use strict";
window.ui = SwaggerUIBundle({{
  url: "{OPENAPI_PATH}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  validatorUrl: null,  // no badge from validator.swagger.io: the docs load nothing from outside
  requestInterceptor: (request) => {{
    const csrf = document.cookie.split("; ").find((pair) => pair.startsWith("kazru_csrf="));
    if (csrf) request.headers["X-CSRF-Token"] = csrf.slice("kazru_csrf=".length);
    return request;
  }},
}});
"""
# Either an API key or, for browsers, the session cookie (or nothing, where KAZRU_ANONYMOUS_ACCESS=shared).
SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`kazru keys create`, or KAZRU_BOOTSTRAP_API_KEY): `Authorization: Bearer <key>`",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "kazru_session",
        "description": "The browser session the gateway sets itself (HttpOnly); its writes need `X-CSRF-Token`",
    },
}


def install(app: FastAPI) -> None:
    """Serve the docs page at DOCS_PATH; the app is created with docs_url=None and openapi_url=OPENAPI_PATH."""
    if util.find_spec("fastapi_offline") is not None:
        assets = resources.files("fastapi_offline") / "static"
        app.mount(f"{DOCS_PATH}/assets", StaticFiles(directory=str(assets)), name="docs-assets")
        docs_page_html = DOCS_PAGE
    else:
        log.warning("fastapi-offline is not installed: %s shows only a link to the OpenAPI document", DOCS_PATH)
        docs_page_html = MISSING_ASSETS_PAGE

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs_page() -> HTMLResponse:
        return HTMLResponse(docs_page_html)

    @app.get(f"{DOCS_PATH}/start.js", include_in_schema=False)
    async def docs_start() -> Response:
        return Response(DOCS_START, media_type="text/javascript")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = without_fastapi_validation_errors(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    summary=app.summary,
                    description=app.description,
                    routes=app.routes,
                )  # fmt: skip
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def without_fastapi_validation_errors(document: dict[str, Any]) -> dict[str, Any]:
    """Drop the 422 answers FastAPI adds to every operation with parameters (we answer 400 instead);
    add the JSON export's schemas and the ways to authenticate;
    say that job ids are UUIDs (any other id is simply not found: 404)."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in str(responses.get("422", "")):
                del responses["422"]
            for parameter in operation.get("parameters", ()):
                if parameter["in"] == "path" and parameter["name"] == "job_id":
                    parameter["schema"]["format"] = "uuid"
    schemas = document.get("components", {}).get("schemas", {})
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    schemas.update(api_models.transcript_export_schemas())  # the export route's JSON
    document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    document["security"] = [{"apiKey": []}, {"session": []}, {}]
    return document
