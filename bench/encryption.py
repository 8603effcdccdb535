"""Cost of the audio encryption at rest (kazru.adapters.encryption), in this process, without S3.

Seals 64 MiB of random bytes (fed in 1 MiB pieces, as the gateway streams an upload) and opens them again
whole, and, for a player's seek, opens 1000 ranges of 4 KiB at random offsets (each decrypts the 64 KiB
chunk or two it falls in). The baseline is the same bytes passed through unchanged (join and copy). MB/s
are of plaintext, the best of 3 runs. Prints JSON. Run with `make bench`.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import time

from kazru.adapters.encryption import HEADER_BYTES, Keyring, SealedObject, Sealer, new_key_entry

SIZE = 64 * 1024 * 1024
PIECE = 1024 * 1024
SEEKS = 1000
SEEK_BYTES = 4096
RUNS = 3


async def pieces(data: bytes, size: int = PIECE):
    for at in range(0, len(data), size):
        yield data[at : at + size]


async def passthrough(data: bytes) -> bytes:
    return b"".join([bytes(piece) async for piece in pieces(data)])


async def seal(keyring: Keyring, data: bytes) -> bytes:
    return b"".join([part async for part in Sealer(keyring).seal(pieces(data))])


async def open_range(keyring: Keyring, sealed: bytes, start: int, end: int) -> bytes:
    opened = SealedObject(keyring, sealed[:HEADER_BYTES], len(sealed))
    first, last = opened.cipher_span(start, end)
    return b"".join([part async for part in opened.plaintext(start, end, pieces(sealed[first:last]))])


async def best_seconds(run) -> float:
    timings = []
    for _ in range(RUNS):
        began = time.perf_counter()
        await run()
        timings.append(time.perf_counter() - began)
    return min(timings)


async def measure() -> dict:
    keyring = Keyring.parse(new_key_entry("bench"))
    data = os.urandom(SIZE)
    sealed = await seal(keyring, data)
    assert await open_range(keyring, sealed, 0, SIZE) == data
    offsets = [random.Random(seed).randrange(SIZE - SEEK_BYTES) for seed in range(SEEKS)]

    async def seeks() -> None:
        for offset in offsets:
            await open_range(keyring, sealed, offset, offset + SEEK_BYTES)

    mb = SIZE / 1e6
    copy_s = await best_seconds(lambda: passthrough(data))
    seal_s = await best_seconds(lambda: seal(keyring, data))
    open_s = await best_seconds(lambda: open_range(keyring, sealed, 0, SIZE))
    seek_s = await best_seconds(seeks)
    return {
        "benchmark": "encryption_at_rest",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "plaintext_mb": round(mb, 1),
        "plain_copy_mb_per_s": round(mb / copy_s),
        "seal_mb_per_s": round(mb / seal_s),
        "open_whole_mb_per_s": round(mb / open_s),
        "seek_4kib_ms": round(seek_s / SEEKS * 1000, 3),
        "size_overhead_percent": round((len(sealed) - SIZE) / SIZE * 100, 3),
    }


if __name__ == "__main__":
    # One event loop for every run: timed one asyncio.run() each, the loop's set-up and tear-down around
    # these 64 MiB took ~1.5 s (profiled inside asyncio.runners), far more than the work measured.
    print(json.dumps(asyncio.run(measure()), indent=2))
