"""An object store in a folder, for unit tests of the use cases without an S3 server. It speaks the part of
`kazru.adapters.storage.ObjectStore`'s vocabulary that ingest and the worker use; `plaintext_url` yields the
object's path, which ffmpeg reads as it reads the real store's local URL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path


class FolderStore:
    def __init__(self, root: Path):
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / key

    def keys(self) -> list[str]:
        return sorted(str(path.relative_to(self.root)) for path in self.root.rglob("*") if path.is_file())

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with target.open("wb") as out:
                async for chunk in chunks:
                    out.write(chunk)
        except BaseException:
            target.unlink(missing_ok=True)  # as S3 keeps no object of an aborted upload
            raise

    async def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    async def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    @contextlib.asynccontextmanager
    async def plaintext_url(self, key: str) -> AsyncIterator[str]:
        yield str(self.path(key))
