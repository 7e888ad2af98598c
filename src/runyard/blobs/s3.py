"""Blobs in an S3-compatible bucket (``s3://bucket/prefix?endpoint_url=...&region=...``).

Credentials come from the usual AWS environment (``AWS_ACCESS_KEY_ID``, ...). An upload is
streamed: up to :data:`PART_BYTES` it is one ``PutObject``; a larger one is a multipart
upload sent part by part as the bytes arrive (memory stays at one part), aborted — leaving
nothing — when the stream fails or passes ``max_bytes``.
"""

import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aioboto3
from botocore.exceptions import ClientError

from runyard.blobs.base import BlobInfo, TooLarge, check_key

log = logging.getLogger(__name__)
PART_BYTES = 8 * 1024 * 1024  # S3's parts are at least 5 MiB, but for the last
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
        part = bytearray()
        async with self._client() as s3:
            upload = _Multipart(s3, self.bucket, object_key)
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(f"more than {max_bytes} bytes")
                    digest.update(chunk)
                    part += chunk
                    if len(part) >= PART_BYTES:
                        await upload.send(bytes(part))
                        part.clear()
                if upload.started:
                    if part:
                        await upload.send(bytes(part))
                    await upload.complete()
                else:
                    await s3.put_object(Bucket=self.bucket, Key=object_key, Body=bytes(part))
            except BaseException:
                await upload.abort()
                raise
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


class _Multipart:
    """One multipart upload, started by its first part."""

    def __init__(self, s3: Any, bucket: str, key: str) -> None:
        self.s3, self.bucket, self.key = s3, bucket, key
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    @property
    def started(self) -> bool:
        return self.upload_id is not None

    async def send(self, body: bytes) -> None:
        if self.upload_id is None:
            created = await self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.key)
            self.upload_id = str(created["UploadId"])
        number = len(self.parts) + 1
        sent = await self.s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
        )
        self.parts.append({"ETag": sent["ETag"], "PartNumber": number})

    async def complete(self) -> None:
        await self.s3.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )

    async def abort(self) -> None:
        """Drop the parts sent so far; a failure here is logged, never raised over the error
        that made us abort."""
        if self.upload_id is None:
            return
        try:
            await self.s3.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )
        except Exception:
            log.warning("could not abort the multipart upload of %s", self.key, exc_info=True)
