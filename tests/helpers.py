"""Small helpers the integration and e2e tests share."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Iterator

from sqlalchemy import func, select

from kazru.db.models import Job
from kazru.storage import ObjectStore


def wav_header(data_bytes: int, sample_rate: int = 16000, channels: int = 1) -> bytes:
    byte_rate = sample_rate * channels * 2
    return (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, channels * 2, 16)
        + b"data" + struct.pack("<I", data_bytes)
    )  # fmt: skip


def silent_wav_chunks(total_bytes: int, chunk: int = 1 << 20) -> Iterator[bytes]:
    """A valid silent WAV of exactly `total_bytes`, produced piece by piece (never whole)."""
    header = wav_header(total_bytes - 44)
    yield header
    remaining = total_bytes - len(header)
    zeros = bytes(chunk)
    while remaining > 0:
        piece = min(chunk, remaining)
        yield zeros[:piece]
        remaining -= piece


async def aiter_of(pieces) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def leftovers(store: ObjectStore, sessions) -> dict[str, int]:
    """Everything an upload could leave behind: objects, unfinished multipart uploads, job rows."""
    objects = await store.list_objects("jobs/")
    multipart = store._client._list_multipart_uploads(store.bucket).uploads  # test-only peek
    async with sessions() as session:
        rows = await session.scalar(select(func.count()).select_from(Job))
    return {"objects": sorted(name for name, _ in objects), "multipart_uploads": len(multipart), "jobs": rows}


async def queued_messages(bus, settings) -> int:
    info = await bus.js.stream_info(settings.jobs_stream)
    return info.state.messages
