"""Artifacts: files a run produced, their bytes in the blob store, their record in the database.

Runners upload (streamed into the blob store, sha256 and size computed, the size limit enforced
while streaming) or register an object they stored themselves under the run's prefix
(``runs/<run id>/``). Either way the record and its ``artifact.created`` event commit together,
in the run's stream, and only while the caller's lease holds the run.
"""

import mimetypes
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa

from runyard.artifacts.tables import artifacts
from runyard.blobs import BlobStore, TooLarge, check_key
from runyard.clock import isoformat, utcnow
from runyard.context import Caller
from runyard.db.engine import Database, Tx
from runyard.events.service import NewEvent
from runyard.ids import new_id
from runyard.problems import InvalidInput, NotFound, PayloadTooLarge
from runyard.runs.service import RunService


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}/"


def artifact_resource(row: dict[str, Any]) -> dict[str, Any]:
    base = f"/v1/runs/{row['run_id']}/artifacts/{row['id']}"
    return {
        "id": row["id"],
        "object": "artifact",
        "run_id": row["run_id"],
        "artifact_type": row["artifact_type"],
        "path": row["path"],
        "storage_key": row["storage_key"],
        "content_type": row["content_type"],
        "size_bytes": row["size_bytes"],
        "sha256": row["sha256"],
        "metadata": row["metadata"],
        "created_at": isoformat(row["created_at"]),
        "links": {"self": base, "content": f"{base}/content"},
    }


class ArtifactService:
    def __init__(self, db: Database, blobs: BlobStore, runs: RunService, max_bytes: int) -> None:
        self.db = db
        self.blobs = blobs
        self.runs = runs
        self.max_bytes = max_bytes

    async def upload(
        self,
        caller: Caller,
        run_id: str,
        chunks: AsyncIterator[bytes],
        *,
        filename: str,
        artifact_type: str = "file",
        path: str | None = None,
        content_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        lease_id: str | None = None,
    ) -> dict[str, Any]:
        await self.runs.ensure_reportable(caller, run_id, lease_id)
        artifact_id = new_id("art")
        # every artifact gets a key of its own, so a later file at the same path never
        # changes the bytes behind an earlier artifact's ETag
        relative = check_key(path) if path else check_key(filename)
        key = f"{run_prefix(run_id)}{artifact_id}/{relative}"
        quota = await self.runs.quotas.artifact_room(caller.workspace_id)
        max_bytes = self.max_bytes if quota is None else min(self.max_bytes, quota[0])
        try:
            if max_bytes == 0:
                raise TooLarge(key)
            info = await self.blobs.put(key, chunks, max_bytes=max_bytes)
        except TooLarge as exc:
            if quota is not None and max_bytes < self.max_bytes:  # the quota, not the limit
                raise quota[1] from exc
            raise PayloadTooLarge(
                f"artifacts are at most {self.max_bytes} bytes", limit=self.max_bytes
            ) from exc
        row = {
            "id": artifact_id,
            "run_id": run_id,
            "workspace_id": caller.workspace_id,
            "artifact_type": artifact_type,
            "path": path,
            "storage_key": key,
            "content_type": content_type
            or mimetypes.guess_type(filename)[0]
            or "application/octet-stream",
            "size_bytes": info.size,
            "sha256": info.sha256,
            "metadata": metadata or {},
            "created_at": utcnow(),
        }
        try:
            return await self._record(caller, row, lease_id)
        except BaseException:
            await self.blobs.delete_prefix(f"{run_prefix(run_id)}{artifact_id}/")
            raise

    async def register(
        self, caller: Caller, run_id: str, body: dict[str, Any], *, lease_id: str | None = None
    ) -> dict[str, Any]:
        """An object the runner stored itself: it must lie under the run's prefix and exist."""
        await self.runs.ensure_reportable(caller, run_id, lease_id)
        key = check_key(str(body["storage_key"]), prefix=run_prefix(run_id))
        info = await self.blobs.stat(key)
        if info is None:
            raise InvalidInput(
                f"nothing is stored under {key}",
                errors=[{"loc": ["body", "storage_key"], "msg": "no such object"}],
            )
        if body.get("path"):
            check_key(body["path"])
        row = {
            "id": new_id("art"),
            "run_id": run_id,
            "workspace_id": caller.workspace_id,
            "artifact_type": body.get("artifact_type") or "file",
            "path": body.get("path"),
            "storage_key": key,
            "content_type": body.get("content_type")
            or mimetypes.guess_type(key)[0]
            or "application/octet-stream",
            "size_bytes": info.size,
            "sha256": None,
            "metadata": body.get("metadata") or {},
            "created_at": utcnow(),
        }
        return await self._record(caller, row, lease_id)

    async def _record(
        self, caller: Caller, row: dict[str, Any], lease_id: str | None
    ) -> dict[str, Any]:
        async def insert(tx: Tx) -> None:
            await self.runs.quotas.admit_artifact(tx.conn, row["workspace_id"], row["size_bytes"])
            await tx.conn.insert_many(artifacts, [row])

        resource = artifact_resource(row)
        event = NewEvent(
            "artifact.created",
            {
                key: resource[key]
                for key in ("id", "artifact_type", "path", "content_type", "size_bytes", "sha256")
            },
        )
        await self.runs.ingest(
            caller, row["run_id"], [event], lease_id=lease_id, source="server", also=insert
        )
        return resource

    async def list_for_run(
        self, caller: Caller, run_id: str, *, with_path: bool = False
    ) -> list[dict[str, Any]]:
        await self.runs.get(caller, run_id)
        query = sa.select(artifacts).where(
            artifacts.c.run_id == run_id, artifacts.c.workspace_id == caller.workspace_id
        )
        if with_path:
            query = query.where(artifacts.c.path.is_not(None))
        async with self.db.read() as conn:
            rows = (await conn.execute(query.order_by(artifacts.c.created_at))).all()
        return [artifact_resource(dict(row._mapping)) for row in rows]

    async def get(
        self,
        caller: Caller,
        run_id: str,
        *,
        artifact_id: str | None = None,
        path: str | None = None,
    ) -> dict[str, Any]:
        query = sa.select(artifacts).where(
            artifacts.c.run_id == run_id, artifacts.c.workspace_id == caller.workspace_id
        )
        query = query.where(
            artifacts.c.id == artifact_id if artifact_id else artifacts.c.path == path
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query.order_by(artifacts.c.created_at.desc()))).first()
        if row is None:
            raise NotFound(
                f"artifact {artifact_id or path} of run {run_id} not found",
                code="artifact_not_found",
            )
        return artifact_resource(dict(row._mapping))

    def content(
        self, artifact: dict[str, Any], start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        return self.blobs.read(artifact["storage_key"], start, end)

    async def purge(self, run_id: str) -> None:
        """After a run is deleted: its records and its blobs."""
        async with self.db.write() as tx:
            await tx.conn.execute(sa.delete(artifacts).where(artifacts.c.run_id == run_id))
        await self.blobs.delete_prefix(run_prefix(run_id))
