"""Pipelines: versioned definitions of how a run executes, and run-input validation."""

import copy
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlalchemy.exc import IntegrityError

from runyard.audit.service import AuditService
from runyard.clock import isoformat, utcnow
from runyard.context import Caller
from runyard.db.engine import Conn, Database, Tx
from runyard.http.pagination import decode_cursor, page_of
from runyard.ids import new_id
from runyard.pipelines import repo
from runyard.pipelines.schemas import PipelineCreate, PipelineUpdate, spec_of
from runyard.problems import Conflict, InvalidInput, PipelineExists, PipelineNotFound

SPEC_CACHE_SIZE = 4096


def pipeline_resource(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "pipeline",
        "workspace_id": row["workspace_id"],
        "name": row["name"],
        "version": row["version"],
        **row["spec"],
        "created_at": isoformat(row["created_at"]),
        "updated_at": isoformat(row["updated_at"]),
    }


def _check_schema(schema: dict[str, Any] | None) -> None:
    if schema is None:
        return
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidInput(
            "input_schema is not a valid JSON Schema",
            errors=[{"loc": ["body", "input_schema", *exc.path], "msg": exc.message}],
        ) from exc


@lru_cache(maxsize=1024)
def _validator(schema_json: bytes) -> Draft202012Validator:
    return Draft202012Validator(orjson.loads(schema_json))


def validate_input(pipeline: dict[str, Any], value: dict[str, Any]) -> None:
    """400 with one field error per violation when ``value`` breaks the input schema."""
    schema = pipeline["spec"].get("input_schema")
    if not schema:
        return
    validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        raise InvalidInput(
            f"input does not match the input_schema of pipeline {pipeline['name']}",
            errors=[
                {"loc": ["body", "input", *error.absolute_path], "msg": error.message}
                for error in errors
            ],
        )


#: pipelines the server defines and executes itself (DESIGN §8, §10): made per workspace on
#: first use; a user cannot create, change or delete one
BUILTIN_PIPELINES: dict[str, dict[str, Any]] = {
    "agent.turn": {
        "description": "One turn of an agent session: the model, its tool calls, the answer.",
        "executor": {"type": "agent"},
        "steps": [],
        "max_attempts": 1,
        "timeout_seconds": 3600,
        "labels": [],
    },
    "extract": {
        "description": "Extraction evaluation: a prompt version and a model config read a "
        "document; the model's JSON object is the output, scored field by field against the "
        "document's ground truth.",
        "executor": {"type": "steps"},
        "input_schema": {
            "type": "object",
            "required": ["prompt_id", "config_id", "document_id"],
            "properties": {
                "prompt_id": {"type": "string"},
                "prompt_version": {"type": "integer", "minimum": 1},
                "config_id": {"type": "string"},
                "document_id": {"type": "string"},
                "variables": {"type": "object"},
            },
        },
        "steps": [{"name": "extract", "uses": "extract", "with": {}}],
        "output_step": "extract",  # the run's output is the extracted object itself
        "max_attempts": 1,
        "timeout_seconds": 3600,
        "labels": ["extraction"],
    },
}
#: built-in pipelines whose runs only the server starts (POST /v1/runs refuses them)
STARTED_BY_SERVER = frozenset({"agent.turn"})


def refuse_builtin(row: dict[str, Any]) -> None:
    if row["name"] in BUILTIN_PIPELINES:
        raise Conflict(
            f"{row['name']!r} is a built-in pipeline of the server", code="builtin_pipeline"
        )


#: checks a pipeline's ``environment`` against its ``steps`` (400 when it cannot be built)
EnvironmentCheck = Callable[[dict[str, Any] | None, list[dict[str, Any]]], Awaitable[None]]


class PipelineService:
    def __init__(
        self, db: Database, audit: AuditService, check_environment: EnvironmentCheck | None = None
    ) -> None:
        self.db = db
        self.audit = audit
        self.check_environment = check_environment
        self._specs: dict[tuple[str, int], dict[str, Any]] = {}
        self._builtins: dict[tuple[str, str], dict[str, Any]] = {}

    async def create(self, caller: Caller, body: PipelineCreate) -> dict[str, Any]:
        if body.name in BUILTIN_PIPELINES:
            raise PipelineExists(
                f"{body.name!r} is a built-in pipeline of the server", code="builtin_pipeline"
            )
        _check_schema(body.input_schema)
        spec = spec_of(body)
        await self._check_environment(spec)
        now = utcnow()
        row: dict[str, Any] = {
            "id": new_id("pl"),
            "workspace_id": caller.workspace_id,
            "name": body.name,
            "version": 1,
            "spec": spec,
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self.db.write() as tx:
                if await repo.find(tx.conn, caller.workspace_id, name=body.name):
                    raise PipelineExists(f"a pipeline named {body.name!r} already exists")
                await repo.insert(tx.conn, row)
                await self.audit.record(
                    tx, caller, "pipeline.create", "pipeline", row["id"], {"name": body.name}
                )
        except IntegrityError as exc:
            raise PipelineExists(f"a pipeline named {body.name!r} already exists") from exc
        return pipeline_resource(row)

    async def ensure_builtin(self, workspace_id: str, name: str) -> dict[str, Any]:
        """The workspace's built-in pipeline ``name`` (:data:`BUILTIN_PIPELINES`), made on
        first use."""
        key = (workspace_id, name)
        if (row := self._builtins.get(key)) is not None:
            return row
        now = utcnow()
        spec = BUILTIN_PIPELINES[name]
        row = {
            "id": new_id("pl"),
            "workspace_id": workspace_id,
            "name": name,
            "version": 1,
            "spec": spec,
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self.db.write() as tx:
                found = await repo.find(tx.conn, workspace_id, name=name)
                if found is None:
                    await repo.insert(tx.conn, row)
                else:
                    row = found
        except IntegrityError:  # made at the same moment by another request
            async with self.db.read() as conn:
                row = await self._find(conn, workspace_id, name)
        self._builtins[key] = row
        return row

    async def get(self, caller: Caller, ref: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            return pipeline_resource(await self._find(conn, caller.workspace_id, ref))

    async def resolve(
        self, tx: Tx, caller: Caller, *, name: str | None, pipeline_id: str | None
    ) -> dict[str, Any]:
        """The pipeline a new run names (404 ``pipeline_not_found`` when unknown), read in the
        run's own transaction."""
        if name is None and pipeline_id is None:
            raise InvalidInput(
                "a run needs `pipeline` (name) or `pipeline_id`",
                errors=[{"loc": ["body", "pipeline"], "msg": "Field required"}],
            )
        row = await repo.find(tx.conn, caller.workspace_id, pipeline_id=pipeline_id, name=name)
        if row is None:
            raise PipelineNotFound(f"pipeline {pipeline_id or name} not found")
        return row

    async def version_spec(self, pipeline_id: str, version: int) -> dict[str, Any]:
        """The definition a run was created with (versions are immutable)."""
        async with self.db.read() as conn:
            spec = await self.cached_spec(conn, pipeline_id, version)
        if spec is None:
            raise PipelineNotFound(f"pipeline {pipeline_id} version {version} not found")
        return copy.deepcopy(spec)

    async def cached_spec(
        self, conn: Conn, pipeline_id: str, version: int
    ) -> dict[str, Any] | None:
        """A version's definition (shared: do not change it), remembered: a version never
        changes and ids are never reused. Deleting the pipeline evicts it here; another
        replica may still serve it from its cache for runs created before the delete."""
        key = (pipeline_id, version)
        spec = self._specs.get(key)
        if spec is None:
            spec = await repo.version_spec(conn, pipeline_id, version)
            if spec is None:
                return None
            if len(self._specs) >= SPEC_CACHE_SIZE:
                self._specs.clear()
            self._specs[key] = spec
        return spec

    async def list_page(self, caller: Caller, *, limit: int, cursor: str | None) -> dict[str, Any]:
        after = decode_cursor(cursor)
        async with self.db.read() as conn:
            rows = await repo.list_page(conn, caller.workspace_id, after=after, limit=limit + 1)
        rows, next_cursor, has_more = page_of(rows, limit)
        return {
            "data": [pipeline_resource(r) for r in rows],
            "next_cursor": next_cursor,
            "has_more": has_more,
        }

    async def update(self, caller: Caller, ref: str, body: PipelineUpdate) -> dict[str, Any]:
        changes = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
        if "input_schema" in changes:
            _check_schema(changes["input_schema"])
        async with self.db.write() as tx:
            row = await self._find(tx.conn, caller.workspace_id, ref, for_update=True)
            refuse_builtin(row)
            row["spec"] = {**row["spec"], **changes}
            if {"environment", "steps", "rollback_steps"} & changes.keys():
                await self._check_environment(row["spec"])
            row["version"] += 1
            row["updated_at"] = utcnow()
            await repo.update(
                tx.conn,
                row["id"],
                version=row["version"],
                spec=row["spec"],
                updated_at=row["updated_at"],
            )
            await self.audit.record(
                tx,
                caller,
                "pipeline.update",
                "pipeline",
                row["id"],
                {"version": row["version"], "changed": sorted(changes)},
            )
        return pipeline_resource(row)

    async def delete(self, caller: Caller, ref: str) -> None:
        async with self.db.write() as tx:
            row = await self._find(tx.conn, caller.workspace_id, ref, for_update=True)
            refuse_builtin(row)
            await repo.delete(tx.conn, row["id"])
            for key in [key for key in self._specs if key[0] == row["id"]]:
                del self._specs[key]
            await self.audit.record(
                tx, caller, "pipeline.delete", "pipeline", row["id"], {"name": row["name"]}
            )

    async def _check_environment(self, spec: dict[str, Any]) -> None:
        if self.check_environment is not None and spec.get("environment") is not None:
            steps = [*spec.get("steps", []), *(spec.get("rollback_steps") or [])]
            await self.check_environment(spec["environment"], steps)

    async def lock(self, tx: Tx, caller: Caller, ref: str) -> dict[str, Any]:
        """The pipeline's row, locked until ``tx`` ends (404 when there is none)."""
        return await self._find(tx.conn, caller.workspace_id, ref, for_update=True)

    @staticmethod
    async def _find(
        conn: Any, workspace_id: str, ref: str, for_update: bool = False
    ) -> dict[str, Any]:
        by_id = ref.startswith("pl_")
        row = await repo.find(
            conn,
            workspace_id,
            pipeline_id=ref if by_id else None,
            name=None if by_id else ref,
            for_update=for_update,
        )
        if row is None:
            raise PipelineNotFound(f"pipeline {ref} not found")
        return row
