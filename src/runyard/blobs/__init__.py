"""Blob stores, chosen by URL scheme: ``file://<dir>`` (default: ``<data_dir>/blobs``) or
``s3://bucket/prefix?endpoint_url=...&region=...``."""

from pathlib import Path

from runyard.blobs.base import BlobInfo, BlobStore, TooLarge, check_key
from runyard.blobs.local import LocalBlobStore


def blobs_from_url(url: str | None, data_dir: Path) -> BlobStore:
    if url is None:
        return LocalBlobStore(data_dir / "blobs")
    scheme, _, rest = url.partition("://")
    if scheme == "file":
        return LocalBlobStore(Path(rest))
    if scheme == "s3":
        from runyard.blobs.s3 import S3BlobStore

        return S3BlobStore(url)
    raise ValueError(f"unsupported blob store URL scheme {scheme!r} (supported: file://, s3://)")


__all__ = ["BlobInfo", "BlobStore", "LocalBlobStore", "TooLarge", "blobs_from_url", "check_key"]
