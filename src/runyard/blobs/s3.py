"""Blobs in an S3-compatible bucket (``s3://bucket/prefix?endpoint_url=...&region=...``).

Credentials come from the usual AWS environment (``AWS_ACCESS_KEY_ID``, ...). An upload is
spooled to a temporary file while its size and sha256 are computed (so a stream over the limit
never reaches the bucket), then sent as one object.
"""

import hashlib
import tempfile
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aioboto3
from botocore.exceptions import ClientError

from runyard.blobs.base import BlobInfo, TooLarge, check_key

SPOOL_BYTES = 8 * 1024 * 1024
CHUNK = 256 * 1024


class S3BlobStore:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self._client_args: dict[str, Any] = {
            "endpoint_url": query.get("endpoint_url"),
            "region_name": query.get("region", "us-east-1"),
        }
        self._session = aioboto3.Session()

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _client(self) -> Any:
        return self._session.client("s3", **self._client_args)

    async def put(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> BlobInfo:
        object_key = self._key(key)
        digest = hashlib.sha256()
        size = 0
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"more than {max_bytes} bytes")
                digest.update(chunk)
                spool.write(chunk)
            spool.seek(0)
            async with self._client() as s3:
                await s3.upload_fileobj(spool, self.bucket, object_key)
        return BlobInfo(size=size, sha256=digest.hexdigest())

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        byte_range = f"bytes={start}-{'' if end is None else end}"
        async with self._client() as s3:
            response = await s3.get_object(Bucket=self.bucket, Key=self._key(key), Range=byte_range)
            body = response["Body"]
            try:
                while chunk := await body.read(CHUNK):
                    yield chunk
            finally:
                body.close()

    async def stat(self, key: str) -> BlobInfo | None:
        async with self._client() as s3:
            try:
                head = await s3.head_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
        return BlobInfo(size=int(head["ContentLength"]))

    async def delete_prefix(self, prefix: str) -> None:
        object_prefix = self._key(prefix.rstrip("/")) + "/"
        async with self._client() as s3:
            paginator = s3.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=object_prefix):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    await s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})

    async def ping(self) -> None:
        async with self._client() as s3:
            await s3.head_bucket(Bucket=self.bucket)
