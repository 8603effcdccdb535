"""S3-compatible object storage (SeaweedFS locally, MinIO in Kubernetes).

The minio SDK is synchronous, so every call runs in a worker thread. Uploads
are streamed: an async iterator of chunks is bridged to the SDK's multipart
`put_object(length=-1)` through a small bounded queue, so memory stays at
about one part whatever the file size. If the iterator raises (size cap,
bad content, client gone), the multipart upload is aborted: nothing is left.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from minio import Minio
from minio.error import S3Error

from kazru.settings import MIB, Settings

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


class ObjectStore:
    def __init__(self, settings: Settings):
        self.bucket = settings.s3_bucket
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

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], content_type: str) -> None:
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
                content_type=content_type,
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
            async for chunk in chunks:
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

    async def read(self, key: str, offset: int = 0, length: int = 0) -> AsyncIterator[bytes]:
        """`length` bytes of the object from `offset` (0: to the end), as they arrive from S3.

        S3 is asked at the first `anext`, which raises a missing object or an outage: a caller
        can pull the first chunk before it answers anything of its own.
        """
        response = await asyncio.to_thread(self._client.get_object, self.bucket, key, offset=offset, length=length)
        try:
            while chunk := await asyncio.to_thread(response.read, READ_CHUNK_BYTES):
                yield chunk
        finally:
            response.close()
            response.release_conn()

    def presigned_url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        """A URL ffmpeg can read the object from (range requests work, so it can seek)."""
        return self._client.presigned_get_object(self.bucket, key, expires=expires)
