"""Streaming uploads into the real S3 server."""

import hashlib

import pytest

from kazru.adapters.storage import PART_SIZE
from kazru.domain import errors
from tests.helpers import aiter_of


async def test_multipart_stream_round_trips(store):
    pieces = [bytes([i % 251]) * 300_000 for i in range(60)]  # 18 MB: three parts
    assert sum(map(len, pieces)) > 2 * PART_SIZE
    key = "jobs/storage-test/original"
    await store.put_stream(key, aiter_of(pieces))
    body = b"".join([chunk async for chunk in store.read(key)])
    assert hashlib.sha256(body).digest() == hashlib.sha256(b"".join(pieces)).digest()
    await store.delete(key)
    assert not await store.exists(key)


async def test_failing_stream_leaves_no_object_and_no_multipart_upload(store):
    async def failing():
        for _ in range(30):  # past the first 8 MiB part, so a multipart upload is open
            yield b"x" * 500_000
        raise errors.UploadTooLarge("too big")

    key = "jobs/storage-fail/original"
    with pytest.raises(errors.UploadTooLarge):
        await store.put_stream(key, failing())
    assert not await store.exists(key)
    assert store._client._list_multipart_uploads(store.bucket).uploads == []


async def test_wrong_secret_is_refused(infra):
    from minio.error import S3Error

    from kazru.adapters.storage import ObjectStore

    intruder = ObjectStore(infra.settings(s3_secret_key="not-the-secret"))
    with pytest.raises(S3Error) as caught:
        await intruder.ping()
    assert caught.value.code in ("AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId")
