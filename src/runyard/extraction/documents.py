"""Documents (DESIGN §10, §15): text, Markdown, JSON or PDF uploads kept as the text a model
reads, with the upload's size and SHA-256, and optional ground truth."""

import hashlib
from typing import Any

import sqlalchemy as sa

from runyard.audit.service import AuditService
from runyard.clock import utcnow
from runyard.context import Caller
from runyard.db.engine import Database
from runyard.extraction import repo
from runyard.extraction.resources import document_resource, not_found
from runyard.extraction.schemas import DocumentCreate, DocumentUpdate
from runyard.extraction.tables import documents
from runyard.extraction.texts import check_text, content_type_of, text_of
from runyard.http.pagination import decode_cursor, page_of
from runyard.ids import new_id
from runyard.problems import InvalidInput


class DocumentService:
    def __init__(self, db: Database, audit: AuditService, max_bytes: int) -> None:
        self.db = db
        self.audit = audit
        #: the largest upload (413 beyond)
        self.max_bytes = max_bytes

    async def create_document(self, caller: Caller, body: DocumentCreate) -> dict[str, Any]:
        check_text(body.content, body.content_type)
        data = body.content.encode()
        return await self._store_document(
            caller, body.name, body.content, body.content_type, data, body.ground_truth
        )

    async def upload_document(
        self,
        caller: Caller,
        data: bytes,
        *,
        filename: str | None,
        declared_type: str | None,
        name: str | None,
        ground_truth: dict[str, Any] | None,
    ) -> dict[str, Any]:
        text, content_type = text_of(data, content_type_of(filename, declared_type))
        return await self._store_document(
            caller, name or filename or "document", text, content_type, data, ground_truth
        )

    async def _store_document(
        self,
        caller: Caller,
        name: str,
        text: str,
        content_type: str,
        data: bytes,
        ground_truth: dict[str, Any] | None,
    ) -> dict[str, Any]:
        now = utcnow()
        row: dict[str, Any] = {
            "id": new_id("doc"),
            "workspace_id": caller.workspace_id,
            "name": name[:500],
            "content_type": content_type,
            "content": text,
            "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "ground_truth": ground_truth,
            "created_by": caller.actor,
            "created_at": now,
            "updated_at": now,
        }
        async with self.db.write() as tx:
            await repo.insert(tx.conn, documents, row)
            await self.audit.record(
                tx,
                caller,
                "document.create",
                "document",
                row["id"],
                {"name": row["name"], "sha256": row["sha256"], "size_bytes": row["size_bytes"]},
            )
        return document_resource(row)

    async def get_document(self, caller: Caller, document_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await repo.get(conn, documents, caller.workspace_id, document_id)
        if row is None:
            raise not_found("document", document_id, "document_not_found")
        return document_resource(row)

    async def list_documents(
        self, caller: Caller, *, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        after = decode_cursor(cursor)
        async with self.db.read() as conn:
            rows = await repo.page(
                conn,
                documents,
                caller.workspace_id,
                limit=limit + 1,
                after=after,
                omit=("content",),
                extra=(sa.func.length(documents.c.content).label("characters"),),
            )
        items, next_cursor, has_more = page_of(rows, limit)
        return {
            "data": [document_resource(r) for r in items],
            "next_cursor": next_cursor,
            "has_more": has_more,
        }

    async def update_document(
        self, caller: Caller, document_id: str, body: DocumentUpdate
    ) -> dict[str, Any]:
        values = body.model_dump(exclude_unset=True)
        if "name" in values and values["name"] is None:
            raise InvalidInput(
                "name cannot be null", errors=[{"loc": ["body", "name"], "msg": "not null"}]
            )
        async with self.db.write() as tx:
            row = await repo.get(tx.conn, documents, caller.workspace_id, document_id)
            if row is None:
                raise not_found("document", document_id, "document_not_found")
            if values:
                values["updated_at"] = utcnow()
                await repo.update(tx.conn, documents, document_id, values)
                row.update(values)
                await self.audit.record(
                    tx,
                    caller,
                    "document.update",
                    "document",
                    document_id,
                    {"fields": [k for k in values if k != "updated_at"]},
                )
        return document_resource(row)

    async def delete_document(self, caller: Caller, document_id: str) -> None:
        async with self.db.write() as tx:
            row = await repo.get(
                tx.conn, documents, caller.workspace_id, document_id, columns=("id",)
            )
            if row is None:
                raise not_found("document", document_id, "document_not_found")
            await repo.delete(tx.conn, documents, document_id)
            await self.audit.record(tx, caller, "document.delete", "document", document_id)
