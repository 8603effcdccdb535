"""HTTP adapter: the /api/v1 contract of ARCHITECTURE.md §3, the page, the OpenAI-compatible routes, health.

`create_app` only composes: the routers (services/gateway/routes/, one per resource), the error handlers
(services/gateway/http_errors.py, the one HTTP mapping), the middleware and the docs. Routes reach the
gateway's core, its settings and the authenticator through app.state (routes/dependencies.py).
"""

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from kazru.settings import Settings
from services.gateway import http_errors, openai_api, openapi_docs
from services.gateway.allowed_hosts import AllowedHosts
from services.gateway.auth import Authenticator
from services.gateway.core import Gateway
from services.gateway.http_telemetry import RequestTelemetry
from services.gateway.routes import files, jobs, page, session, system, transcript
from services.gateway.routes.dependencies import session_cookies
from services.gateway.security_headers import SecurityHeaders


def create_app(settings: Settings, gateway: Gateway, auth: Authenticator) -> FastAPI:
    app = FastAPI(
        title="KazRu-STT Pro",
        summary="Transcription of Kazakh, Russian and mixed Kazakh-Russian recordings",
        description=openapi_docs.QUICK_START,
        version="1.0.0",
        docs_url=None,  # served by openapi_docs, without a CDN
        redoc_url=None,
        openapi_url=openapi_docs.OPENAPI_PATH,
    )
    app.state.settings, app.state.gateway, app.state.auth = settings, gateway, auth
    openapi_docs.install(app)
    app.mount("/static", StaticFiles(directory=str(page.STATIC_DIR)), name="static")
    http_errors.install_handlers(app)

    # The last added runs outermost: telemetry, the Host allow-list, session cookies, CORS, security headers.
    app.add_middleware(SecurityHeaders, docs_path=openapi_docs.DOCS_PATH)
    if settings.cors_origins:
        # For other sites' pages that call the API with a key: never with cookies (no credentials).
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Range"],
            expose_headers=["Location", "Retry-After", "Content-Disposition", "Content-Range"], max_age=600,
        )  # fmt: skip
    app.middleware("http")(session_cookies)

    for router in (
        page.router, jobs.router, transcript.router, files.router, system.router, session.router, openai_api.router
    ):
        app.include_router(router)
    app.add_middleware(AllowedHosts, allowed=settings.http_allowed_hosts)
    app.add_middleware(RequestTelemetry)
    return app
