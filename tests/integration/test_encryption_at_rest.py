"""Audio encrypted at rest, against the real S3 server: what S3 holds is ciphertext and says nothing about
the audio; reads (ranges, ffmpeg through the plaintext URL) give back the exact plaintext; key rotation;
a wrong or dropped key, and a changed or cut object, fail with a clear error and never with other bytes."""

from __future__ import annotations

import io
import subprocess
import uuid

import httpx
import numpy as np
import pytest

from kazru.adapters import audio
from kazru.adapters.encryption import CHUNK_BYTES, HEADER_BYTES, MAGIC, TAG_BYTES, new_key_entry
from kazru.adapters.storage import KEY_ID_METADATA, ObjectStore
from kazru.domain import errors
from tests.conftest import FIXTURES
from tests.helpers import aiter_of

CLIP = (FIXTURES / "conversation_3spk.flac").read_bytes()  # 365 kB: five full chunks and a partial one
OLD_KEY = new_key_entry("old")
NEW_KEY = new_key_entry("new")


def store_with(infra, keys: str, active: str = "") -> ObjectStore:
    return ObjectStore(infra.settings(encryption_keys=keys, encryption_key_id=active))


def raw(store: ObjectStore, key: str) -> bytes:
    """The object's bytes as S3 holds them, past kazru's decryption."""
    response = store._client.get_object(store.bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def put_raw(store: ObjectStore, key: str, data: bytes) -> None:
    store._client.put_object(store.bucket, key, io.BytesIO(data), len(data))


async def read_all(store: ObjectStore, key: str, offset: int = 0, length: int = 0) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, offset, length)])


async def stored(store: ObjectStore, data: bytes = CLIP) -> str:
    key = f"jobs/{uuid.uuid4()}/original"
    await store.put_stream(key, aiter_of([data[i : i + 10_000] for i in range(0, len(data), 10_000)]))
    return key


async def test_s3_holds_neither_the_audio_nor_anything_about_it(store):
    key = await stored(store)
    ciphertext = raw(store, key)
    windows = {ciphertext[i : i + 32] for i in range(len(ciphertext) - 31)}
    assert not any(CLIP[i : i + 32] in windows for i in range(len(CLIP) - 31)), "a 32-byte run of the audio in S3"
    # Where a file's type would show, the object starts with the envelope instead. (A 3-4 byte magic
    # anywhere else is chance: b"ID3" turns up in about 1 in 46 random objects of this size, and the
    # 32-byte check above already finds any run of the file's own bytes, its header included.)
    assert ciphertext.startswith(MAGIC)
    for magic in (b"fLaC", b"RIFF", b"OggS", b"ID3", b"ftyp", b"WAVE"):
        assert magic not in ciphertext[: HEADER_BYTES + 16]
    stat = store._client.stat_object(store.bucket, key)
    assert stat.content_type == "application/octet-stream"
    ours = {name.lower(): value for name, value in stat.metadata.items() if name.lower().startswith("x-amz-meta-")}
    assert ours == {f"x-amz-meta-{KEY_ID_METADATA}": "test"}
    assert await read_all(store, key) == CLIP


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, 100),
        (CHUNK_BYTES - 10, 20),  # across the first chunk boundary
        (CHUNK_BYTES, CHUNK_BYTES),  # exactly one whole chunk
        (CHUNK_BYTES - 1, 2 * CHUNK_BYTES + 2),  # over three chunks, cut at both ends
        (5 * CHUNK_BYTES + 3, 0),  # the last, partial chunk, to the end
        (len(CLIP) - 1, 0),  # the very last byte
        (100, 10 * len(CLIP)),  # a length past the end stops at the end
    ],
)
async def test_ranges_read_exactly_the_plaintext_bytes(store, offset, length):
    key = await stored(store)
    assert await read_all(store, key, offset, length) == CLIP[offset : offset + length if length else None]


async def test_a_rotated_key_opens_old_objects_and_seals_new_ones(infra):
    before = store_with(infra, OLD_KEY)
    old_object = await stored(before)
    rotated = store_with(infra, f"{OLD_KEY},{NEW_KEY}", active="new")
    new_object = await stored(rotated)
    assert await read_all(rotated, old_object) == CLIP
    assert await read_all(rotated, new_object) == CLIP
    for key, key_id in ((old_object, "old"), (new_object, "new")):
        assert rotated._client.stat_object(rotated.bucket, key).metadata[f"x-amz-meta-{KEY_ID_METADATA}"] == key_id
        assert raw(rotated, key)[6 : 6 + len(key_id)] == key_id.encode()  # the header's copy, which counts
    # A service still on the old keyring cannot open what the new key sealed: it says which key it lacks.
    with pytest.raises(errors.Internal) as caught:
        await read_all(before, new_object)
    assert (caught.value.code, caught.value.details) == ("ENCRYPTION_KEY_UNKNOWN", {"key_id": "new"})


async def test_a_dropped_key_fails_clearly_everywhere(infra):
    old_object = await stored(store_with(infra, OLD_KEY))
    dropped = store_with(infra, NEW_KEY)
    with pytest.raises(errors.Internal) as caught:
        await read_all(dropped, old_object)
    assert caught.value.code == "ENCRYPTION_KEY_UNKNOWN" and "'old'" in caught.value.message
    with pytest.raises(errors.Internal, match="not in KAZRU_ENCRYPTION_KEYS"):
        async with dropped.plaintext_url(old_object):
            pytest.fail("the block must not run without the key")


async def test_a_wrong_key_under_the_same_id_fails_clearly(infra):
    key = await stored(store_with(infra, OLD_KEY))
    impostor = store_with(infra, new_key_entry("old"))
    with pytest.raises(errors.Internal) as caught:
        await read_all(impostor, key, CHUNK_BYTES, 10)
    assert caught.value.code == "ENCRYPTION_KEY_MISMATCH"
    with pytest.raises(errors.Internal) as caught:
        async with impostor.plaintext_url(key):
            pytest.fail("the block must not run with the wrong key")
    assert caught.value.code == "ENCRYPTION_KEY_MISMATCH"


STORED_CHUNK = CHUNK_BYTES + TAG_BYTES


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


@pytest.mark.parametrize(
    "damage",
    [
        lambda c: flip(c, HEADER_BYTES + 2 * STORED_CHUNK + 100),  # a byte of chunk 2
        lambda c: flip(c, len(c) - 1),  # the last chunk's tag
        lambda c: flip(c, 40),  # the header's chunk size
        lambda c: c[: HEADER_BYTES + 5 * STORED_CHUNK],  # cut after a whole chunk: the last one is missing
        lambda c: c[:-1000],  # cut inside the last chunk
        lambda c: c[: HEADER_BYTES + STORED_CHUNK] + c[HEADER_BYTES + 2 * STORED_CHUNK :],  # a chunk dropped
        lambda c: (
            c[:HEADER_BYTES]
            + c[HEADER_BYTES + STORED_CHUNK : HEADER_BYTES + 2 * STORED_CHUNK]
            + c[HEADER_BYTES + STORED_CHUNK :]
        ),  # chunk 1 repeated in place of chunk 0
        lambda c: c[:50],  # a header cut short
        lambda c: b"",  # emptied
    ],
    ids=["chunk-byte", "last-tag", "header", "cut-at-chunk", "cut-in-chunk", "dropped", "moved", "stub", "empty"],
)
async def test_a_changed_or_cut_object_fails_clearly(store, damage):
    key = await stored(store)
    put_raw(store, key, damage(raw(store, key)))
    with pytest.raises(errors.Internal) as caught:
        await read_all(store, key)
    assert caught.value.code in ("OBJECT_UNREADABLE", "ENCRYPTION_KEY_MISMATCH")


async def test_ffmpeg_reads_a_changed_object_as_the_clear_error_not_as_audio(store):
    key = await stored(store)
    put_raw(store, key, flip(raw(store, key), HEADER_BYTES + 3 * STORED_CHUNK + 7))
    with pytest.raises(errors.Internal) as caught:
        async with store.plaintext_url(key) as url:
            await audio.decode_pcm16k(url)
    assert caught.value.code == "OBJECT_UNREADABLE"


@pytest.fixture(scope="module")
def mp4_with_its_index_at_the_end(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("mp4") / "clip.m4a"
    subprocess.run([audio._default_ffmpeg(), "-v", "error", "-i", str(FIXTURES / "conversation_3spk.flac"),
                    "-c:a", "aac", "-b:a", "64k", str(path)], check=True)  # fmt: skip
    data = path.read_bytes()
    assert data.index(b"moov") > data.index(b"mdat") > 0, "ffmpeg writes moov last unless told +faststart"
    return data


async def test_ffmpeg_probes_and_decodes_through_the_plaintext_url(store, mp4_with_its_index_at_the_end, tmp_path):
    data = mp4_with_its_index_at_the_end
    key = await stored(store, data)
    local = tmp_path / "clip.m4a"
    local.write_bytes(data)
    async with store.plaintext_url(key) as url:
        assert url.startswith("http://127.0.0.1:")
        info = await audio.probe(url)
        samples = await audio.decode_pcm16k(url)
    assert info == await audio.probe(str(local))
    assert info.codec == "aac" and info.duration_seconds > 10
    assert np.array_equal(samples, await audio.decode_pcm16k(str(local)))
    with pytest.raises(httpx.TransportError):  # served only while the block runs
        httpx.get(url, timeout=2)


async def test_the_plaintext_url_answers_ranges_like_a_server(store):
    key = await stored(store)
    size = len(CLIP)
    async with store.plaintext_url(key) as url, httpx.AsyncClient(timeout=10) as client:
        whole = await client.get(url)
        assert (whole.status_code, whole.content, whole.headers["accept-ranges"]) == (200, CLIP, "bytes")
        for header, start, end in [("bytes=0-0", 0, 0), (f"bytes={CHUNK_BYTES - 5}-{CHUNK_BYTES + 5}",
                                   CHUNK_BYTES - 5, CHUNK_BYTES + 5), ("bytes=-70000", size - 70000, size - 1),
                                   (f"bytes={3 * CHUNK_BYTES}-", 3 * CHUNK_BYTES, size - 1)]:  # fmt: skip
            part = await client.get(url, headers={"Range": header})
            assert part.status_code == 206
            assert part.content == CLIP[start : end + 1]
            assert part.headers["content-range"] == f"bytes {start}-{end}/{size}"
        outside = await client.get(url, headers={"Range": f"bytes={size}-"})
        assert (outside.status_code, outside.headers["content-range"]) == (416, f"bytes */{size}")
        assert (await client.get(url.rsplit("/", 1)[0] + "/guess")).status_code == 404
