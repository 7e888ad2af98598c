"""Pipeline bundles (DESIGN §7): a zip or tar of step code uploaded with a pipeline, checked
entry by entry (:mod:`.archives`), kept in the blob store under its SHA-256, and recorded as
the pipeline's current bundle. Environments built for the pipeline unpack it."""

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa

from runyard.audit.service import AuditService
from runyard.blobs import BlobStore
from runyard.clock import isoformat, utcnow
from runyard.context import Caller
from runyard.db.engine import Database
from runyard.pipelines.archives import inspect
from runyard.pipelines.service import PipelineService, refuse_builtin
from runyard.pipelines.tables import pipeline_bundles
from runyard.problems import NotFound

B = pipeline_bundles.c
SUFFIXES = {"zip": "zip", "tar": "tar", "tar.gz": "tar.gz"}


def bundle_resource(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "bundle",
        "pipeline_id": row["pipeline_id"],
        "sha256": row["sha256"],
        "size_bytes": row["size_bytes"],
        "unpacked_bytes": row["unpacked_bytes"],
        "format": row["format"],
        "files": row["files"],
        "uploaded_by": row["uploaded_by"],
        "uploaded_at": isoformat(row["uploaded_at"]),
    }


class BundleService:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        pipelines: PipelineService,
        audit: AuditService,
        *,
        max_bytes: int,
        max_unpacked_bytes: int,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.pipelines = pipelines
        self.audit = audit
        self.max_bytes = max_bytes
        self.max_unpacked_bytes = max_unpacked_bytes

    async def upload(self, caller: Caller, ref: str, data: bytes) -> dict[str, Any]:
        """Check ``data``, store it and make it the pipeline's bundle (replacing any)."""
        pipeline = await self.pipelines.get(caller, ref)  # 404 before the bytes are read
        refuse_builtin(pipeline)
        checked = await asyncio.to_thread(inspect, data, max_unpacked_bytes=self.max_unpacked_bytes)
        sha256 = hashlib.sha256(data).hexdigest()
        key = f"pipelines/{pipeline['id']}/bundles/{sha256}.{SUFFIXES[checked.format]}"
        await self.blobs.put(key, _once(data), max_bytes=len(data))
        row = {
            "pipeline_id": pipeline["id"],
            "workspace_id": caller.workspace_id,
            "sha256": sha256,
            "size_bytes": len(data),
            "unpacked_bytes": checked.unpacked_bytes,
            "format": checked.format,
            "files": checked.files,
            "storage_key": key,
            "uploaded_by": caller.actor,
            "uploaded_at": utcnow(),
        }
        async with self.db.write() as tx:
            await self.pipelines.lock(tx, caller, pipeline["id"])  # 404 if deleted meanwhile
            await tx.conn.execute(
                sa.delete(pipeline_bundles).where(B.pipeline_id == row["pipeline_id"])
            )
            await tx.conn.execute(sa.insert(pipeline_bundles).values(**row))
            await self.audit.record(
                tx,
                caller,
                "pipeline.bundle.upload",
                "pipeline",
                pipeline["id"],
                {"sha256": sha256, "size_bytes": len(data), "files": len(checked.files)},
            )
        return bundle_resource(row)

    async def get(self, caller: Caller, ref: str) -> dict[str, Any]:
        pipeline = await self.pipelines.get(caller, ref)
        async with self.db.read() as conn:
            found = (
                await conn.execute(
                    sa.select(pipeline_bundles).where(
                        B.pipeline_id == pipeline["id"], B.workspace_id == caller.workspace_id
                    )
                )
            ).first()
        if found is None:
            raise NotFound(
                f"pipeline {ref} has no bundle (POST /v1/pipelines/{ref}/bundle)",
                code="bundle_not_found",
            )
        return bundle_resource(dict(found._mapping))


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
