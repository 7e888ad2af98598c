"""Blobs as files under a directory (the embedded default: ``<data_dir>/blobs``)."""

import asyncio
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from runyard.blobs.base import BlobInfo, TooLarge, check_key

CHUNK = 256 * 1024


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):  # belt and braces over check_key
            raise ValueError(f"key {key!r} escapes the store")
        return path

    async def put(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> BlobInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        digest = hashlib.sha256()
        size = 0
        try:
            with partial.open("wb") as handle:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(f"more than {max_bytes} bytes")
                    digest.update(chunk)
                    await asyncio.to_thread(handle.write, chunk)
            os.replace(partial, path)  # readers see the whole blob or none of it
        finally:
            partial.unlink(missing_ok=True)
        return BlobInfo(size=size, sha256=digest.hexdigest())

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        with path.open("rb") as handle:
            handle.seek(start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                size = CHUNK if remaining is None else min(CHUNK, remaining)
                chunk = await asyncio.to_thread(handle.read, size)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    async def stat(self, key: str) -> BlobInfo | None:
        path = self._path(key)
        return BlobInfo(size=path.stat().st_size) if path.is_file() else None

    async def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix.rstrip("/"))
        if path.is_dir():
            await asyncio.to_thread(shutil.rmtree, path)
        elif path.is_file():
            path.unlink()

    async def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise PermissionError(str(self.root))
