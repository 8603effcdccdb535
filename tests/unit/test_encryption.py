"""The encrypted object format (kazru.adapters.encryption) without S3: sizes at chunk boundaries, ranges, and that
every change to the bytes or the key is refused rather than decrypted into something else."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from kazru.adapters.encryption import CHUNK_BYTES, HEADER_BYTES, TAG_BYTES, Keyring, SealedObject, Sealer, new_key_entry
from kazru.domain import errors
from kazru.settings import Settings
from tests.helpers import aiter_of

C = CHUNK_BYTES
STORED_CHUNK = C + TAG_BYTES
KEYRING = Keyring.parse(new_key_entry("k1"))


async def seal(plaintext: bytes, keyring: Keyring = KEYRING, piece: int = 10_000) -> bytes:
    pieces = [plaintext[i : i + piece] for i in range(0, len(plaintext), piece)]
    return b"".join([part async for part in Sealer(keyring).seal(aiter_of(pieces))])


async def open_range(sealed: bytes, start: int, end: int, keyring: Keyring = KEYRING) -> bytes:
    opened = SealedObject(keyring, sealed[:HEADER_BYTES], len(sealed))
    first, last = opened.cipher_span(start, end)
    ciphertext = [sealed[i : min(i + 7777, last)] for i in range(first, last, 7777)]  # as S3 would send it
    return b"".join([part async for part in opened.plaintext(start, end, aiter_of(ciphertext))])


@pytest.mark.parametrize(
    ("size", "chunks"),
    [(0, 1), (1, 1), (C - 1, 1), (C, 2), (C + 1, 2), (3 * C, 4), (3 * C + 17, 4)],
    ids=["empty", "one-byte", "chunk-less-one", "one-chunk", "chunk-and-one", "three-chunks", "three-and-some"],
)
async def test_sizes_at_chunk_boundaries_round_trip(size, chunks):
    plaintext = os.urandom(size)
    sealed = await seal(plaintext)
    # A multiple of the chunk size (the empty plaintext too) ends with an empty last chunk.
    assert len(sealed) == HEADER_BYTES + size + TAG_BYTES * chunks
    opened = SealedObject(KEYRING, sealed[:HEADER_BYTES], len(sealed))
    assert (opened.plaintext_size, opened.chunk_count, opened.key_id) == (size, chunks, "k1")
    assert await open_range(sealed, 0, size) == plaintext


async def test_the_plaintext_stream_is_sealed_piece_by_piece_whatever_the_piece_size():
    plaintext = os.urandom(3 * C + 5)
    for piece in (1000, C, C + 1, 10 * C):
        assert await open_range(await seal(plaintext, piece=piece), 0, len(plaintext)) == plaintext


async def test_ranges_decrypt_only_the_chunks_they_cover():
    plaintext = os.urandom(4 * C + 100)
    sealed = await seal(plaintext)
    opened = SealedObject(KEYRING, sealed[:HEADER_BYTES], len(sealed))
    for start, end in [(0, 1), (C - 1, C + 1), (C, 2 * C), (2 * C + 5, 4 * C + 100), (4 * C, 4 * C + 100),
                       (4 * C + 99, 4 * C + 100), (10, 3 * C - 10)]:  # fmt: skip
        assert await open_range(sealed, start, end) == plaintext[start:end]
    assert opened.cipher_span(C + 1, C + 2) == (HEADER_BYTES + STORED_CHUNK, HEADER_BYTES + 2 * STORED_CHUNK)
    assert opened.cipher_span(4 * C, 4 * C + 100) == (HEADER_BYTES + 4 * STORED_CHUNK, len(sealed))


async def test_a_range_to_the_end_checks_the_empty_last_chunk():
    plaintext = os.urandom(3 * C)
    sealed = await seal(plaintext)
    opened = SealedObject(KEYRING, sealed[:HEADER_BYTES], len(sealed))
    assert opened.cipher_span(2 * C, 3 * C)[1] == len(sealed)  # the empty chunk is read too
    # Cut to the first 16 bytes of chunk 2, the sizes look like two chunks and an empty last one: only
    # decrypting that "last chunk" shows the cut.
    cut = sealed[: HEADER_BYTES + 2 * STORED_CHUNK + TAG_BYTES]
    with pytest.raises(errors.Internal) as caught:
        await open_range(cut, 0, 2 * C)
    assert caught.value.code == "OBJECT_UNREADABLE"


async def test_the_last_chunk_must_have_been_sealed_as_the_last():
    sealer = Sealer(KEYRING)
    plaintext = os.urandom(C + 5)
    # Right sizes and index, but chunk 1 sealed as "more follows": the flag alone tells the reader.
    unfinished = sealer.header + sealer._chunk(plaintext[:C], False) + sealer._chunk(plaintext[C:], False)
    with pytest.raises(errors.Internal, match="chunk 1"):
        await open_range(unfinished, 0, C + 5)
    assert await open_range(unfinished, 0, C) == plaintext[:C]  # what was sealed still opens


def test_every_object_has_its_own_data_key_and_nonces():
    one, other = Sealer(KEYRING), Sealer(KEYRING)
    assert one.header[:38] == other.header[:38]  # magic, version, key id
    assert one.header[42:] != other.header[42:]  # nonce prefix, wrap nonce, wrapped key


@pytest.mark.parametrize(
    ("damage", "code"),
    [
        (lambda s: s[:HEADER_BYTES] + s[HEADER_BYTES + STORED_CHUNK :], "OBJECT_UNREADABLE"),  # chunk dropped
        (
            lambda s: (
                s[:HEADER_BYTES]
                + s[HEADER_BYTES + STORED_CHUNK : HEADER_BYTES + 2 * STORED_CHUNK]
                + s[HEADER_BYTES : HEADER_BYTES + STORED_CHUNK]
                + s[HEADER_BYTES + 2 * STORED_CHUNK :]
            ),
            "OBJECT_UNREADABLE",
        ),  # chunks 0 and 1 swapped
        (lambda s: s[: HEADER_BYTES + 2 * STORED_CHUNK], "OBJECT_UNREADABLE"),  # cut after a chunk
        (lambda s: s[:-1], "OBJECT_UNREADABLE"),
        (lambda s: s + b"\0" * TAG_BYTES, "OBJECT_UNREADABLE"),  # a forged empty last chunk appended
        (lambda s: s[: HEADER_BYTES - 1], "OBJECT_UNREADABLE"),
        (lambda s: b"XXXX" + s[4:], "OBJECT_UNREADABLE"),
        (lambda s: s[:4] + b"\x02" + s[5:], "OBJECT_UNREADABLE"),  # a version we do not know
        (lambda s: s[:45] + bytes([s[45] ^ 1]) + s[46:], "ENCRYPTION_KEY_MISMATCH"),  # the nonce prefix
        (lambda s: s[:100] + bytes([s[100] ^ 1]) + s[101:], "ENCRYPTION_KEY_MISMATCH"),  # the wrapped key
        (lambda s: s[:5] + b"\x02k2" + s[8:], "ENCRYPTION_KEY_UNKNOWN"),  # another key id
    ],
)
async def test_changed_bytes_are_refused_not_decrypted(damage, code):
    plaintext = os.urandom(2 * C + 10)
    sealed = damage(await seal(plaintext))
    with pytest.raises(errors.Internal) as caught:
        await open_range(sealed, 0, 2 * C + 10)
    assert caught.value.code == code


@pytest.mark.parametrize("at", [HEADER_BYTES + 5, HEADER_BYTES + STORED_CHUNK + C + 3, -1])
async def test_a_flipped_bit_in_any_chunk_is_refused(at):
    sealed = bytearray(await seal(os.urandom(2 * C + 10)))
    sealed[at] ^= 0x80
    with pytest.raises(errors.Internal, match="cannot be decrypted"):
        await open_range(bytes(sealed), 0, 2 * C + 10)


async def test_keys_rotate_and_a_wrong_or_missing_key_is_named():
    old_entry, new_entry = new_key_entry("2025-01"), new_key_entry("2025-06")
    old_object = await seal(b"before", Keyring.parse(old_entry))
    rotated = Keyring.parse(f"{old_entry},{new_entry}", "2025-06")
    new_object = await seal(b"after", rotated)
    assert SealedObject(rotated, new_object[:HEADER_BYTES], len(new_object)).key_id == "2025-06"
    assert await open_range(old_object, 0, 6, rotated) == b"before"
    assert await open_range(new_object, 0, 5, rotated) == b"after"
    with pytest.raises(errors.Internal) as caught:
        await open_range(old_object, 0, 6, Keyring.parse(new_entry))
    assert (caught.value.code, caught.value.details) == ("ENCRYPTION_KEY_UNKNOWN", {"key_id": "2025-01"})
    with pytest.raises(errors.Internal) as caught:
        await open_range(old_object, 0, 6, Keyring.parse(new_key_entry("2025-01")))
    assert caught.value.code == "ENCRYPTION_KEY_MISMATCH"


@pytest.mark.parametrize(
    ("entries", "active", "complaint"),
    [
        ("", "", "no encryption keys"),
        ("k1", "", "id:base64key"),
        ("bad id:" + new_key_entry("x")[2:], "", "id:base64key"),
        ("k1:c2hvcnQ=", "", "32 bytes"),
        ("k1:not base64!", "", "32 bytes"),
        (f"{new_key_entry('k1')},{new_key_entry('k1')}", "", "twice"),
        (f"{new_key_entry('k1')},{new_key_entry('k2')}", "", "active"),
        (new_key_entry("k1"), "k2", "active"),
    ],
)
def test_a_bad_keyring_fails_at_start_without_echoing_the_keys(entries, active, complaint):
    with pytest.raises(ValidationError) as caught:
        Settings(encryption_keys=entries or " ", encryption_key_id=active)
    assert complaint in str(caught.value)
    for entry in entries.split(","):
        if ":" in entry:
            assert entry.partition(":")[2] not in str(caught.value)
