"""Who is calling: an API key (Bearer, or the cookie of a browser signed in with one), a browser session
cookie, or the shared local owner.

API keys are stored as sha256 hashes; the key itself exists only with its holder.
Owner ids are opaque strings; a job belongs to exactly one.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru.db.api_keys import hash_key
from kazru.db.models import ApiKey
from kazru.domain import errors
from kazru.settings import AnonymousAccess, Settings

SESSION_COOKIE = "kazru_session"
# The API key a person typed into the page (routes/session.py): HttpOnly, so the page's streams, audio and
# downloads, which cannot carry an Authorization header, act as the key's owner.
KEY_COOKIE = "kazru_key"
LOCAL_OWNER = "local"
BOOTSTRAP_OWNER = "bootstrap"


@dataclass(frozen=True)
class Principal:
    owner_id: str
    # Set when this request started a new browser session: the caller sets the cookie.
    new_session_token: str | None = None
    # The API key the caller presented (its record id); None for anonymous callers.
    api_key_id: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.api_key_id is None


class Authenticator:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]):
        self._settings = settings
        self._sessions = sessions

    async def register_bootstrap_key(self) -> None:
        if self._settings.bootstrap_api_key is None:
            return
        key = self._settings.bootstrap_api_key.get_secret_value()
        async with self._sessions.begin() as session:
            await session.execute(
                insert(ApiKey)
                .values(id=uuid.uuid4(), owner_id=BOOTSTRAP_OWNER, name="bootstrap", key_hash=hash_key(key))
                .on_conflict_do_nothing(index_elements=["key_hash"])
            )

    async def key_holder(self, key: str) -> Principal:
        async with self._sessions() as session:
            record = await session.scalar(
                select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
            )
        if record is None:
            raise errors.Unauthenticated("the API key is not valid", code="INVALID_API_KEY")
        return Principal(record.owner_id, api_key_id=str(record.id))

    @staticmethod
    def bearer_token(authorization: str | None) -> str | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.Unauthenticated("use 'Authorization: Bearer <api key>'", code="INVALID_AUTHORIZATION")
        return token.strip()

    async def authenticate(
        self, authorization: str | None, session_cookie: str | None, browser: bool, key_cookie: str | None = None
    ) -> Principal:
        """Resolve the owner. `browser` callers (HTTP) may be signed in with a key (`key_cookie`) or be given a
        session cookie."""
        token = self.bearer_token(authorization)
        if token is not None:
            return await self.key_holder(token)
        if browser and key_cookie:
            return await self.key_holder(key_cookie)
        mode = self._settings.anonymous_access
        if mode is AnonymousAccess.SHARED:
            return Principal(LOCAL_OWNER)
        if mode is AnonymousAccess.COOKIE and browser:
            if session_cookie and 16 <= len(session_cookie) <= 128:
                return Principal(self._session_owner(session_cookie))
            new_token = secrets.token_urlsafe(32)
            return Principal(self._session_owner(new_token), new_session_token=new_token)
        raise errors.Unauthenticated("an API key is required", code="API_KEY_REQUIRED")

    @staticmethod
    def _session_owner(token: str) -> str:
        return "session:" + hash_key(token)[:32]
