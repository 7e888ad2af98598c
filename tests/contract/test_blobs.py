"""One suite for every blob store: local files, and S3 against moto's server on loopback."""

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runyard.blobs import BlobStore, TooLarge, blobs_from_url
from runyard.problems import InvalidInput

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "local":
        yield blobs_from_url(f"file://{tmp_path / 'blobs'}", tmp_path)
        return
    yield blobs_from_url(request.getfixturevalue("s3_bucket_url"), tmp_path)


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read_all(store: BlobStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, start, end)])


async def test_put_read_stat_and_ranges(store: BlobStore) -> None:
    info = await store.put("runs/r1/a.txt", stream(b"hello ", b"world"), max_bytes=100)
    assert info.size == 11
    assert info.sha256 == "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    assert await read_all(store, "runs/r1/a.txt") == b"hello world"
    assert await read_all(store, "runs/r1/a.txt", 6, 10) == b"world"
    assert await read_all(store, "runs/r1/a.txt", 6) == b"world"
    stat = await store.stat("runs/r1/a.txt")
    assert stat is not None and stat.size == 11
    assert await store.stat("runs/r1/missing") is None
    await store.ping()


async def test_an_oversize_stream_stores_nothing(store: BlobStore) -> None:
    with pytest.raises(TooLarge):
        await store.put("runs/r1/big", stream(b"x" * 60, b"y" * 60), max_bytes=100)
    assert await store.stat("runs/r1/big") is None


async def test_a_stream_larger_than_a_part_round_trips(store: BlobStore) -> None:
    """17 MiB: on S3 a multipart upload of three parts (8 + 8 + 1 MiB), sent as it streams."""
    mib = 1024 * 1024
    pieces = [bytes([i]) * mib for i in range(17)]
    info = await store.put("runs/r1/large", stream(*pieces), max_bytes=20 * mib)
    whole = b"".join(pieces)
    assert (info.size, info.sha256) == (len(whole), hashlib.sha256(whole).hexdigest())
    assert await read_all(store, "runs/r1/large", 8 * mib - 1, 8 * mib) == b"\x07\x08"
    assert await read_all(store, "runs/r1/large") == whole
    with pytest.raises(TooLarge):  # past the limit after two parts went out: nothing is kept
        await store.put("runs/r1/huge", stream(*pieces), max_bytes=16 * mib + 1)
    assert await store.stat("runs/r1/huge") is None


async def test_delete_prefix_removes_only_that_prefix(store: BlobStore) -> None:
    for key in ("runs/r1/a", "runs/r1/deep/b", "runs/r2/c"):
        await store.put(key, stream(b"x"), max_bytes=10)
    await store.delete_prefix("runs/r1/")
    assert await store.stat("runs/r1/a") is None and await store.stat("runs/r1/deep/b") is None
    assert await store.stat("runs/r2/c") is not None


async def test_traversal_is_refused(store: BlobStore) -> None:
    for key in ("../x", "/abs", "runs/../../etc/passwd", "a//b", ""):
        with pytest.raises(InvalidInput):
            await store.put(key, stream(b"x"), max_bytes=10)
