"""A browser signed in with an API key.

Where anonymous access is denied (KAZRU_ANONYMOUS_ACCESS=deny, as every production deployment is), the
page asks a person for an API key once and the gateway keeps it in an HttpOnly, SameSite=Strict cookie
for a day: the page's status streams, audio and download links cannot carry an Authorization header,
and the key never has to live where the page's script (or anything injected into it) could read it.
Writes made on the strength of that cookie pass the same CSRF rules as a browser session's.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from kazru.domain import errors
from services.gateway import openapi_docs as docs
from services.gateway.auth import LOCAL_OWNER, Principal
from services.gateway.routes.dependencies import (
    AuthenticatorDep,
    SettingsDep,
    check_browser_write,
    identify_caller,
    read_json,
    sign_in_browser,
)

router = APIRouter(prefix="/api/v1/session")


class SignIn(BaseModel):
    api_key: str = Field(
        min_length=1, max_length=256, description="An API key (made with `kazru-admin keys create`)",
        examples=["kz_0Yc1b5Hq9GmB7xQ2v4Lw8Ns6Rt3Ue5Kd7Fa9Zp1Xj2M"],
    )  # fmt: skip


class Credential(BaseModel):
    credential: Literal["api_key", "browser_session", "shared", "none"] = Field(
        description="How the caller is known: an API key (sent, or kept by a signed-in browser), the browser's "
        "own anonymous session, the one shared local owner (KAZRU_ANONYMOUS_ACCESS=shared), or not at all: "
        "anonymous access is denied and an API key is needed (the page then asks for one)"
    )


def credential_of(caller: Principal) -> Credential:
    if not caller.anonymous:
        return Credential(credential="api_key")
    return Credential(credential="shared" if caller.owner_id == LOCAL_OWNER else "browser_session")


@router.get(
    "", summary="How you are known to the service", response_model=Credential,
    description="`none` where anonymous access is denied and no API key was sent or signed in with.",
    responses=docs.error_responses({401: ("INVALID_API_KEY", "INVALID_AUTHORIZATION"), **docs.UNAVAILABLE}),
)  # fmt: skip
async def read_session(request: Request, auth: AuthenticatorDep) -> Credential:
    try:
        caller = await identify_caller(request, auth)
    except errors.Unauthenticated as refusal:
        if refusal.code != "API_KEY_REQUIRED":
            raise  # a wrong or revoked key is an error, not "signed out"
        return Credential(credential="none")
    return credential_of(caller)


@router.post(
    "", summary="Sign this browser in with an API key", response_model=Credential,
    description="Checks the key and keeps it in an HttpOnly cookie for 24 hours; from then on the browser acts "
    "as the key's owner. Its writes need the `X-CSRF-Token` header (the `kazru_csrf` cookie's value).",
    openapi_extra={"requestBody": docs.json_request_body(SignIn)},
    responses=docs.error_responses({
        400: ("INVALID_REQUEST",), 401: ("INVALID_API_KEY",), 413: ("BODY_TOO_LARGE",), **docs.WRITE_ERRORS,
        **docs.UNAVAILABLE,
    }),
)  # fmt: skip
async def sign_in(request: Request, auth: AuthenticatorDep, settings: SettingsDep) -> Credential:
    check_browser_write(request)
    body = await read_json(request, settings.max_json_body_bytes, SignIn)
    holder = await auth.key_holder(body.api_key)
    sign_in_browser(request, body.api_key)
    return credential_of(holder)


@router.delete(
    "", summary="Sign this browser out: forget the API key it was signed in with", status_code=204,
    responses=docs.error_responses({**docs.WRITE_ERRORS}),
)  # fmt: skip
async def sign_out(request: Request) -> Response:
    check_browser_write(request)
    sign_in_browser(request, None)
    return Response(status_code=204)
