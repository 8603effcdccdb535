"""S3-compatible object storage (SeaweedFS locally, MinIO in Kubernetes).

The minio SDK is synchronous, so every call runs in a worker thread. Uploads
are streamed: an async iterator of chunks is bridged to the SDK's multipart
`put_object(length=-1)` through a small bounded queue, so memory stays at
about one part whatever the file size. If the iterator raises (size cap,
bad content, client gone), the multipart upload is aborted: nothing is left.

Audio is stored encrypted (kazru.adapters.encryption): `put_stream` seals the plaintext as it
streams, `read` opens a plaintext range with ranged GETs of only the chunks it needs,
and `plaintext_url` serves a plaintext on 127.0.0.1 for ffmpeg. The object's S3
metadata holds its master key id and nothing about the audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import datetime

from minio import Minio
from minio.error import S3Error

from kazru.adapters import byte_ranges
from kazru.adapters.encryption import HEADER_BYTES, Keyring, SealedObject, Sealer
from kazru.settings import MIB, Settings

log = logging.getLogger(__name__)

# The smallest part S3 accepts: memory per upload stays near one part.
PART_SIZE = 5 * MIB
READ_CHUNK_BYTES = 256 * 1024
_EOF = object()
_ABORT = object()


class _QueueReader(io.RawIOBase):
    """File-like view of an asyncio.Queue of byte chunks, read from a worker thread."""

    def __init__(self, queue: asyncio.Queue, loop: asyncio.AbstractEventLoop):
        super().__init__()
        self._queue = queue
        self._loop = loop
        self._rest = b""
        self._finished = False
        self.aborted = False

    def readable(self) -> bool:
        return True

    def _next_item(self) -> object:
        return asyncio.run_coroutine_threadsafe(self._queue.get(), self._loop).result()

    def read(self, size: int = -1) -> bytes:
        # Gather whole chunks and join once: one copy per part, whatever the chunk size.
        pieces = [self._rest] if self._rest else []
        have = len(self._rest)
        while not self._finished and (size < 0 or have < size):
            if self.aborted:
                raise OSError("upload aborted")
            item = self._next_item()
            if item is _ABORT:
                raise OSError("upload aborted")
            if item is _EOF:
                self._finished = True
            else:
                pieces.append(item)
                have += len(item)
        data = b"".join(pieces)
        if 0 <= size < len(data):
            data, self._rest = data[:size], data[size:]
        else:
            self._rest = b""
        return data


# S3 metadata of every object: the master key that wraps its data key, so that an operator can find
# what a key still opens before dropping it (the header's copy is the one that counts).
KEY_ID_METADATA = "kazru-key-id"


class ObjectStore:
    def __init__(self, settings: Settings, *, with_keys: bool = True):
        """`with_keys=False`: a store that only lists and deletes (the janitor), given no master keys."""
        unset = [name for name, value in (("KAZRU_S3_ACCESS_KEY", settings.s3_access_key),
                                          ("KAZRU_S3_SECRET_KEY", settings.s3_secret_key.get_secret_value()))
                 if not value]  # fmt: skip
        if unset:  # production has no built-in credentials (kazru.settings)
            raise ValueError(f"{' and '.join(unset)} not set: the object store needs credentials of its own")
        self.bucket = settings.s3_bucket
        self._keyring = None
        if with_keys:
            if settings.encryption_keys is None:
                raise ValueError(
                    "KAZRU_ENCRYPTION_KEYS is not set: audio is stored encrypted and needs a master key "
                    "(README, Encryption at rest)"
                )
            self._keyring = Keyring.parse(settings.encryption_keys.get_secret_value(), settings.encryption_key_id)
        self._client = Minio(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value(),
            secure=settings.s3_secure,
            region=settings.s3_region,
        )

    async def ensure_bucket(self) -> None:
        if not await asyncio.to_thread(self._client.bucket_exists, self.bucket):
            try:
                await asyncio.to_thread(self._client.make_bucket, self.bucket)
            except S3Error as error:
                # Another replica created it first.
                if error.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    async def ping(self) -> None:
        await asyncio.to_thread(self._client.bucket_exists, self.bucket)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        """Store the plaintext `chunks` as `key`, sealed under the active master key as they stream."""
        sealer = Sealer(self._keys)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=4)
        reader = _QueueReader(queue, loop)
        upload = asyncio.ensure_future(
            asyncio.to_thread(
                self._client.put_object,
                self.bucket,
                key,
                reader,
                -1,
                # Ciphertext: neither its type nor any name says what the audio is.
                content_type="application/octet-stream",
                metadata={KEY_ID_METADATA: sealer.key_id},
                part_size=PART_SIZE,
                num_parallel_uploads=1,
            )
        )

        async def feed(item: object) -> None:
            if not queue.full():  # the usual case: no task, no wait
                queue.put_nowait(item)
                return
            put = asyncio.ensure_future(queue.put(item))
            done, _ = await asyncio.wait({put, upload}, return_when=asyncio.FIRST_COMPLETED)
            if put not in done:
                put.cancel()
                upload.result()  # the upload ended early: raise its error
                raise OSError("object store stopped reading the upload")

        try:
            async for chunk in sealer.seal(chunks):
                await feed(chunk)
            await feed(_EOF)
            # Shielded: cancelling the wait must not orphan the thread's outcome.
            await asyncio.shield(upload)
        except BaseException:
            reader.aborted = True
            try:
                queue.put_nowait(_ABORT)
            except asyncio.QueueFull:
                pass  # the reader is not waiting on the queue; it checks `aborted` next
            # Shielded: when we are cancelled the upload may still complete, and then the
            # object must go, so that a failed put_stream never leaves an object behind.
            await asyncio.shield(self._remove_if_completed(upload, key))
            raise

    async def _remove_if_completed(self, upload: asyncio.Future, key: str) -> None:
        (outcome,) = await asyncio.gather(upload, return_exceptions=True)
        if not isinstance(outcome, BaseException):
            await self.delete(key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._client.remove_object, self.bucket, key)

    async def exists(self, key: str) -> bool:
        try:
            await asyncio.to_thread(self._client.stat_object, self.bucket, key)
            return True
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise

    async def list_objects(self, prefix: str = "") -> list[tuple[str, datetime]]:
        """(name, last modified) of every object under `prefix`."""

        def _list() -> list[tuple[str, datetime]]:
            return [
                (o.object_name, o.last_modified)
                for o in self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
            ]

        return await asyncio.to_thread(_list)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix` (a job's original and anything derived); returns how many."""
        names = [name for name, _ in await self.list_objects(prefix)]
        for name in names:
            await self.delete(name)
        return len(names)

    async def list_multipart_uploads(self, prefix: str = "") -> list[tuple[str, str, datetime | None]]:
        """(key, upload id, initiated) of every unfinished multipart upload under `prefix`."""

        def _list() -> list[tuple[str, str, datetime | None]]:
            found, key_marker, id_marker = [], None, None
            while True:
                # The SDK has no public call for this; its request helper is stable across 7.x.
                page = self._client._list_multipart_uploads(
                    self.bucket, prefix=prefix or None, key_marker=key_marker, upload_id_marker=id_marker
                )
                found += [(u.object_name, u.upload_id, u.initiated_time) for u in page.uploads]
                if not page.is_truncated or not page.uploads:
                    return found
                key_marker, id_marker = page.next_key_marker, page.next_upload_id_marker

        return await asyncio.to_thread(_list)

    async def abort_multipart_upload(self, key: str, upload_id: str) -> None:
        await asyncio.to_thread(self._client._abort_multipart_upload, self.bucket, key, upload_id)

    @property
    def _keys(self) -> Keyring:
        if self._keyring is None:
            raise RuntimeError("this ObjectStore was built without master keys")
        return self._keyring

    async def _get(self, key: str, offset: int, length: int) -> AsyncIterator[bytes]:
        """Ciphertext bytes [offset, offset + length) as they arrive from S3."""
        response = await asyncio.to_thread(self._client.get_object, self.bucket, key, offset=offset, length=length)
        try:
            while chunk := await asyncio.to_thread(response.read, READ_CHUNK_BYTES):
                yield chunk
        finally:
            response.close()
            response.release_conn()

    async def _open(self, key: str) -> SealedObject:
        """The object's header, opened with its master key: one ranged GET, whose Content-Range gives the size."""

        def _header() -> tuple[bytes, int]:
            response = self._client.get_object(self.bucket, key, offset=0, length=HEADER_BYTES)
            try:
                header = response.read()
                content_range = response.headers.get("Content-Range", "")
                size = int(content_range.rpartition("/")[2]) if content_range else len(header)
                return header, size
            finally:
                response.close()
                response.release_conn()

        try:
            header, size = await asyncio.to_thread(_header)
        except S3Error as error:
            if error.code != "InvalidRange":  # an empty object has no first bytes to ask for
                raise
            header, size = b"", 0
        return SealedObject(self._keys, header, size)

    async def read(self, key: str, offset: int = 0, length: int = 0) -> AsyncIterator[bytes]:
        """`length` plaintext bytes of the object from `offset` (0: to the end), decrypted as they arrive.

        S3 is asked at the first `anext`, which raises a missing object, an outage, or a key or object
        that does not open (errors.Internal with an encryption code): a caller can pull the first chunk
        before it answers anything of its own.
        """
        sealed = await self._open(key)
        async for chunk in self._read_open(key, sealed, offset, length):
            yield chunk

    async def _read_open(self, key: str, sealed: SealedObject, offset: int, length: int) -> AsyncIterator[bytes]:
        end = min(offset + length, sealed.plaintext_size) if length else sealed.plaintext_size
        if offset >= end and sealed.plaintext_size:
            return
        cipher_start, cipher_end = sealed.cipher_span(offset, end)
        ciphertext = self._get(key, cipher_start, cipher_end - cipher_start)
        try:
            async for chunk in sealed.plaintext(offset, end, ciphertext):
                yield chunk
        finally:
            await ciphertext.aclose()

    @contextlib.asynccontextmanager
    async def plaintext_url(self, key: str) -> AsyncIterator[str]:
        """An http://127.0.0.1 URL that serves the object's plaintext, with Range (so ffmpeg can seek, e.g. to
        an MP4's index at the end), while the block runs; nothing decrypted touches a disk.

        A key that does not open fails here, before the block. A failure while serving (a changed chunk, S3
        gone) is raised when the block ends, instead of whatever ffmpeg made of a cut-off stream."""
        sealed = await self._open(key)
        path = "/" + secrets.token_urlsafe(16)  # other local processes cannot guess it
        failures: list[Exception] = []
        handlers: set[asyncio.Task] = set()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            handlers.add(asyncio.current_task())
            try:
                await self._answer(reader, writer, path, key, sealed)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass  # ffmpeg hung up, e.g. to seek elsewhere
            except Exception as error:
                log.warning("could not serve a plaintext range", extra={"object_key": key, "error": repr(error)})
                failures.append(error)
            finally:
                writer.close()
                handlers.discard(asyncio.current_task())

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}{path}"
        except Exception as error:
            if failures:
                raise failures[0] from error
            raise
        finally:
            server.close()
            for task in list(handlers):
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await server.wait_closed()
        if failures:
            raise failures[0]

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, key: str, sealed: SealedObject
    ) -> None:
        """One HTTP/1.1 GET (ffmpeg sends `Connection: close` and one request per connection)."""
        request_line = (await reader.readline()).decode("latin-1").split()
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        size = sealed.plaintext_size
        if len(request_line) < 2 or request_line[0] != "GET" or request_line[1] != path:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        try:
            wanted = byte_ranges.parse_range(headers.get("range"), size)
        except byte_ranges.Unsatisfiable:
            writer.write(f"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\n"
                         "Content-Length: 0\r\nConnection: close\r\n\r\n".encode())  # fmt: skip
            return
        part = wanted or byte_ranges.ByteRange(0, size - 1)
        status = "206 Partial Content" if wanted else "200 OK"
        content_range = f"Content-Range: {wanted.content_range(size)}\r\n" if wanted else ""
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\n"
                     f"{content_range}Content-Length: {part.length}\r\nConnection: close\r\n\r\n".encode())  # fmt: skip
        async for chunk in self._read_open(key, sealed, part.start, part.length):
            writer.write(chunk)
            await writer.drain()
        await writer.drain()
