"""API keys: created, listed and revoked by an administrator (`kazru-admin keys ...`), checked by the gateway.

Only the sha256 of a key is stored; the key itself is shown once, at creation. Each key
acts as one owner: a new owner of its own unless it is created for an existing one.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kazru.db.models import ApiKey
from kazru.domain import errors

KEY_PREFIX = "kz_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NewKey:
    record: ApiKey
    # The only copy of the key: it cannot be recovered from the database.
    key: str


async def create_key(sessions: async_sessionmaker[AsyncSession], name: str, owner_id: str | None = None) -> NewKey:
    name = name.strip()
    if not 1 <= len(name) <= 128 or not name.isprintable():
        raise errors.InvalidArgument("a key name is 1-128 printable characters", code="INVALID_KEY_NAME")
    if owner_id is not None and not 1 <= len(owner_id) <= 128:
        raise errors.InvalidArgument("an owner id is 1-128 characters", code="INVALID_OWNER")
    key_id = uuid.uuid4()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(id=key_id, owner_id=owner_id or f"key:{key_id}", name=name, key_hash=hash_key(key))
    async with sessions.begin() as session:
        session.add(record)
    return NewKey(record, key)


async def list_keys(sessions: async_sessionmaker[AsyncSession]) -> list[ApiKey]:
    async with sessions() as session:
        return list(await session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


async def revoke_key(sessions: async_sessionmaker[AsyncSession], key_id: str) -> ApiKey:
    """Revoke now; revoking a revoked key keeps its first revocation time."""
    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        raise errors.NotFound("no such API key", code="API_KEY_NOT_FOUND", details={"key_id": key_id[:64]}) from None
    async with sessions.begin() as session:
        await session.execute(
            update(ApiKey).where(ApiKey.id == parsed, ApiKey.revoked_at.is_(None)).values(revoked_at=datetime.now(UTC))
        )
        record = await session.get(ApiKey, parsed)
    if record is None:
        raise errors.NotFound("no such API key", code="API_KEY_NOT_FOUND", details={"key_id": key_id[:64]})
    return record
