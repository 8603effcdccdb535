"""Audio at rest: envelope encryption, so the object store only ever holds ciphertext.

Each object gets its own random 256-bit data key. The data key is wrapped (AES-256-GCM) by a master
key from the settings (KAZRU_ENCRYPTION_KEYS), which never leaves the services: S3 sees the wrapped
key, never a key that opens it. The content is AES-256-GCM in fixed-size plaintext chunks, so a byte
range (a player seeking, ffmpeg reading an MP4's index at the end) decrypts only the chunks it covers.

Object layout, version 1 (integers big-endian):

    offset  bytes  field
    0       4      magic b"KZAE"
    4       1      version, 1
    5       1      length n of the master key id (1..32)
    6       32     master key id, ASCII, zero-padded
    38      4      plaintext chunk size C (65536)
    42      8      nonce prefix, random per object
    50      12     nonce of the wrapped data key, random
    62      48     the data key wrapped: AES-256-GCM(master key, nonce, data key, associated data = bytes 0..49)
    110     ...    the chunks

Chunk i is AES-256-GCM(data key, nonce = prefix ‖ u32 i, plaintext[i·C : (i+1)·C], associated data =
u32 i ‖ u8 last): C + 16 bytes, except the last one. The last chunk holds 0..C-1 bytes, so a plaintext
that is a multiple of C (the empty one included) ends with an empty chunk: every object has a last
chunk, and one cut after any chunk no longer has it. The index and the flag in the associated data make
reordered, dropped or truncated chunks fail to decrypt; the header's bytes in the wrap's associated data
make a changed key id, chunk size or nonce prefix fail to open. No length is stored: with k+1 chunks
and a last one of r bytes the object is 110 + k·(C+16) + r+16 bytes, which gives k and r back.

Master keys are kept by id so they can rotate: new objects use the active key; an object opens with the
key named in its header, which must still be in the keyring.
"""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kazru.domain import errors
from kazru.settings import ENCRYPTION_KEY_BYTES as KEY_BYTES
from kazru.settings import MAX_ENCRYPTION_KEY_ID_CHARS as MAX_KEY_ID_BYTES  # ASCII: a character is a byte
from kazru.settings import parse_encryption_keys

MAGIC = b"KZAE"
VERSION = 1
CHUNK_BYTES = 64 * 1024
TAG_BYTES = 16
_PREFIX = struct.Struct(">4sBB32sI8s")  # magic, version, id length, id, chunk size, nonce prefix
_WRAP_NONCE_BYTES = 12
HEADER_BYTES = _PREFIX.size + _WRAP_NONCE_BYTES + KEY_BYTES + TAG_BYTES  # 110
# Bounds a damaged header cannot push a reader past (the chunk size is authenticated only at unwrap).
_MAX_CHUNK_BYTES = 16 * 1024 * 1024

KEY_UNKNOWN = "ENCRYPTION_KEY_UNKNOWN"
KEY_MISMATCH = "ENCRYPTION_KEY_MISMATCH"
UNREADABLE = "OBJECT_UNREADABLE"


@dataclass(frozen=True)
class Keyring:
    """Master keys by id, and the id of the one that seals new objects."""

    keys: dict[str, bytes]
    active_id: str

    @classmethod
    def parse(cls, entries: str, active_id: str = "") -> Keyring:
        """The keyring of KAZRU_ENCRYPTION_KEYS / KAZRU_ENCRYPTION_KEY_ID, read as the settings check them
        (`kazru.settings.parse_encryption_keys`: ValueError naming what is wrong, never the key)."""
        return cls(*parse_encryption_keys(entries, active_id))


def new_key_entry(key_id: str) -> str:
    """A fresh master key as a keyring entry, `id:base64key`."""
    return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


def _chunk_ad(index: int, last: bool) -> bytes:
    return struct.pack(">IB", index, last)


class Sealer:
    """Seals one new object under the keyring's active key: the header, then the chunks as the plaintext streams."""

    def __init__(self, keyring: Keyring):
        self.key_id = keyring.active_id
        data_key = AESGCM.generate_key(bit_length=256)
        self._prefix = os.urandom(8)
        bound = _PREFIX.pack(MAGIC, VERSION, len(self.key_id), self.key_id.encode(), CHUNK_BYTES, self._prefix)
        wrap_nonce = os.urandom(_WRAP_NONCE_BYTES)
        self.header = bound + wrap_nonce + AESGCM(keyring.keys[self.key_id]).encrypt(wrap_nonce, data_key, bound)
        self._aead = AESGCM(data_key)
        self._index = 0

    def _chunk(self, plaintext: bytes | bytearray | memoryview, last: bool) -> bytes:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index), plaintext, _chunk_ad(self._index, last))
        self._index += 1
        return sealed

    async def seal(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The object's bytes for a plaintext stream: the header, then each sealed chunk as soon as its
        plaintext is complete (a full chunk is never the last one). Memory: a piece received plus one
        sealed chunk; sealed chunks are yielded one by one, never joined into a piece-sized copy."""
        yield self.header
        pending = bytearray()
        async for piece in chunks:
            pending += piece
            whole = len(pending) - len(pending) % CHUNK_BYTES
            if whole:
                view = memoryview(pending)
                for at in range(0, whole, CHUNK_BYTES):
                    yield self._chunk(view[at : at + CHUNK_BYTES], False)
                view.release()
                del pending[:whole]
        yield self._chunk(pending, True)


class SealedObject:
    """A stored object whose header has been opened: its plaintext size, and its ranges decrypted."""

    def __init__(self, keyring: Keyring, header: bytes, object_size: int):
        if len(header) < HEADER_BYTES or header[:4] != MAGIC:
            raise _unreadable("it is not an encrypted object (or its header is cut)")
        magic, version, id_length, padded_id, chunk_bytes, prefix = _PREFIX.unpack_from(header)
        if version != VERSION:
            raise _unreadable(f"its format version {version} is unknown")
        if not 1 <= id_length <= MAX_KEY_ID_BYTES or not 1 <= chunk_bytes <= _MAX_CHUNK_BYTES:
            raise _unreadable("its header is damaged")
        self.key_id = padded_id[:id_length].decode("ascii", "replace")
        master = keyring.keys.get(self.key_id)
        if master is None:
            raise errors.Internal(
                f"the audio is encrypted with master key {self.key_id!r}, which is not in KAZRU_ENCRYPTION_KEYS",
                code=KEY_UNKNOWN, details={"key_id": self.key_id},
            )  # fmt: skip
        wrap_nonce = header[_PREFIX.size : _PREFIX.size + _WRAP_NONCE_BYTES]
        try:
            data_key = AESGCM(master).decrypt(wrap_nonce, header[_PREFIX.size + _WRAP_NONCE_BYTES : HEADER_BYTES],
                                              header[: _PREFIX.size])  # fmt: skip
        except InvalidTag:
            raise errors.Internal(
                f"the audio does not open with master key {self.key_id!r}: the key differs from the one it was "
                "sealed with, or the object's header was changed",
                code=KEY_MISMATCH, details={"key_id": self.key_id},
            ) from None  # fmt: skip
        self._aead = AESGCM(data_key)
        self._prefix = prefix
        self.chunk_bytes = chunk_bytes
        stored = chunk_bytes + TAG_BYTES
        body = object_size - HEADER_BYTES
        if body < TAG_BYTES or (body - TAG_BYTES) % stored >= chunk_bytes:
            raise _unreadable("it is cut short or has been changed")
        self.chunk_count = (body - TAG_BYTES) // stored + 1
        self.plaintext_size = body - TAG_BYTES * self.chunk_count

    def _chunks(self, start: int, end: int) -> range:
        """The chunks that hold plaintext [start, end). A range to the end takes the last chunk too, even an
        empty one: it is what shows that the object was not cut short."""
        last = self.chunk_count - 1 if end >= self.plaintext_size else (end - 1) // self.chunk_bytes
        return range(start // self.chunk_bytes, last + 1)

    def cipher_span(self, start: int, end: int) -> tuple[int, int]:
        """The ciphertext bytes [offset, end) that hold plaintext [start, end), 0 ≤ start < end ≤ plaintext size
        (or 0, 0 for an empty one)."""
        chunks = self._chunks(start, end)
        stored = self.chunk_bytes + TAG_BYTES
        body = self.plaintext_size + TAG_BYTES * self.chunk_count
        return HEADER_BYTES + chunks.start * stored, HEADER_BYTES + min(chunks.stop * stored, body)

    async def plaintext(self, start: int, end: int, ciphertext: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Plaintext [start, end), from `ciphertext`: the bytes of `cipher_span(start, end)` as they arrive.
        A chunk that fails to decrypt, or a stream that ends early, raises OBJECT_UNREADABLE: never
        bytes that were not sealed."""
        pending, used = bytearray(), 0  # bytes received; how many of them are decrypted
        source = aiter(ciphertext)
        for index in self._chunks(start, end):
            position = index * self.chunk_bytes  # where the chunk starts in the plaintext
            need = min(self.chunk_bytes, self.plaintext_size - position) + TAG_BYTES
            if len(pending) - used < need:
                del pending[:used]  # once per piece received, not once per chunk
                used = 0
            while len(pending) - used < need:
                piece = await anext(source, None)
                if piece is None:
                    raise _unreadable("it is shorter than its header says")
                pending += piece
            last = index == self.chunk_count - 1
            sealed = pending[used : used + need]
            used += need
            try:
                plain = self._aead.decrypt(_nonce(self._prefix, index), sealed, _chunk_ad(index, last))
            except InvalidTag:
                raise _unreadable(f"its chunk {index} has been changed, moved or cut") from None
            if part := plain[max(start - position, 0) : end - position]:
                yield part


def _unreadable(why: str) -> errors.Internal:
    return errors.Internal(f"the stored audio cannot be decrypted: {why}", code=UNREADABLE)
