"""Prompts with immutable versions and model configs (DESIGN §10, §15), and what an
``extract`` run needs: its ids checked when it is created, its job when it executes."""

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from runyard.audit.service import AuditService
from runyard.clock import utcnow
from runyard.context import Caller
from runyard.db.engine import Conn, Database
from runyard.extraction import prompting, repo
from runyard.extraction.resources import (
    config_resource,
    not_found,
    prompt_resource,
    response_format,
    version_resource,
)
from runyard.extraction.schemas import (
    ExtractInput,
    ModelConfigCreate,
    PromptCreate,
    PromptUpdate,
    PromptVersionCreate,
)
from runyard.extraction.tables import documents, model_configs, prompt_versions, prompts
from runyard.http.pagination import decode_cursor, encode_cursor, page_of
from runyard.ids import new_id
from runyard.llm import repo as llm_repo
from runyard.problems import BadRequest, Conflict, InvalidInput, LlmModelNotFound, NotFound


@dataclass(frozen=True)
class ExtractionJob:
    """What one extraction executes: the conversation, the model config and the truth."""

    prompt_id: str
    prompt_version: int
    config_id: str
    document_id: str
    model_id: str
    temperature: float | None
    max_tokens: int | None
    response_format: dict[str, Any]
    template: str
    variables: dict[str, Any]
    document: str
    ground_truth: dict[str, Any] | None

    @property
    def json_schema(self) -> dict[str, Any] | None:
        if self.response_format.get("type") != "json_schema":
            return None
        schema: dict[str, Any] = self.response_format["json_schema"]["schema"]
        return schema


class ExtractionService:
    def __init__(self, db: Database, audit: AuditService) -> None:
        self.db = db
        self.audit = audit

    # -- prompts ------------------------------------------------------------------------

    async def create_prompt(self, caller: Caller, body: PromptCreate) -> dict[str, Any]:
        if body.template is not None:
            prompting.check_template(body.template, body.variables)
        elif body.variables:
            raise InvalidInput(
                "variables belong to a version: give `template` too",
                errors=[{"loc": ["body", "template"], "msg": "Field required with variables"}],
            )
        now = utcnow()
        row: dict[str, Any] = {
            "id": new_id("prm"),
            "workspace_id": caller.workspace_id,
            "name": body.name,
            "description": body.description,
            "latest_version": 0 if body.template is None else 1,
            "created_by": caller.actor,
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self.db.write() as tx:
                if await repo.named(tx.conn, prompts, caller.workspace_id, body.name):
                    raise _exists("prompt", body.name)
                await repo.insert(tx.conn, prompts, row)
                if body.template is not None:
                    await repo.insert(
                        tx.conn, prompt_versions, self._version(caller, row["id"], 1, body)
                    )
                await self.audit.record(
                    tx, caller, "prompt.create", "prompt", row["id"], {"name": body.name}
                )
        except IntegrityError as exc:
            raise _exists("prompt", body.name) from exc
        return prompt_resource(row)

    @staticmethod
    def _version(
        caller: Caller, prompt_id: str, number: int, body: PromptCreate | PromptVersionCreate
    ) -> dict[str, Any]:
        return {
            "prompt_id": prompt_id,
            "version": number,
            "template": body.template,
            "variables": list(body.variables),
            "created_by": caller.actor,
            "created_at": utcnow(),
        }

    async def _prompt(
        self, conn: Conn, caller: Caller, prompt_id: str, **kw: Any
    ) -> dict[str, Any]:
        row = await repo.get(conn, prompts, caller.workspace_id, prompt_id, **kw)
        if row is None:
            raise not_found("prompt", prompt_id, "prompt_not_found")
        return row

    async def get_prompt(self, caller: Caller, prompt_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            return prompt_resource(await self._prompt(conn, caller, prompt_id))

    async def list_prompts(
        self, caller: Caller, *, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        return await self._list(caller, prompts, prompt_resource, limit, cursor)

    async def update_prompt(
        self, caller: Caller, prompt_id: str, body: PromptUpdate
    ) -> dict[str, Any]:
        values = body.model_dump(exclude_unset=True)
        if values.get("name", "") is None:
            raise InvalidInput(
                "name cannot be null", errors=[{"loc": ["body", "name"], "msg": "not null"}]
            )
        try:
            async with self.db.write() as tx:
                row = await self._prompt(tx.conn, caller, prompt_id, for_update=True)
                name = values.get("name")
                if (
                    name
                    and name != row["name"]
                    and await repo.named(tx.conn, prompts, caller.workspace_id, name)
                ):
                    raise _exists("prompt", name)
                if values:
                    values["updated_at"] = utcnow()
                    await repo.update(tx.conn, prompts, prompt_id, values)
                    row.update(values)
                    await self.audit.record(
                        tx, caller, "prompt.update", "prompt", prompt_id, {"fields": list(values)}
                    )
        except IntegrityError as exc:
            raise _exists("prompt", str(values.get("name"))) from exc
        return prompt_resource(row)

    async def delete_prompt(self, caller: Caller, prompt_id: str) -> None:
        """The prompt and its versions; runs made with them keep their record."""
        async with self.db.write() as tx:
            row = await self._prompt(tx.conn, caller, prompt_id, for_update=True)
            await repo.delete(tx.conn, prompts, prompt_id)
            await self.audit.record(
                tx, caller, "prompt.delete", "prompt", prompt_id, {"name": row["name"]}
            )

    async def create_version(
        self, caller: Caller, prompt_id: str, body: PromptVersionCreate
    ) -> dict[str, Any]:
        prompting.check_template(body.template, body.variables)
        async with self.db.write() as tx:
            prompt = await self._prompt(tx.conn, caller, prompt_id, for_update=True)
            number = prompt["latest_version"] + 1
            row = self._version(caller, prompt_id, number, body)
            await repo.insert(tx.conn, prompt_versions, row)
            await repo.update(
                tx.conn,
                prompts,
                prompt_id,
                {"latest_version": number, "updated_at": row["created_at"]},
            )
            await self.audit.record(
                tx, caller, "prompt.version.create", "prompt", prompt_id, {"version": number}
            )
        return version_resource(row)

    async def get_version(self, caller: Caller, prompt_id: str, number: int) -> dict[str, Any]:
        async with self.db.read() as conn:
            await self._prompt(conn, caller, prompt_id)
            row = await repo.version(conn, prompt_id, number)
        if row is None:
            raise _versionnot_found(prompt_id, number)
        return version_resource(row)

    async def list_versions(
        self, caller: Caller, prompt_id: str, *, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        after = decode_cursor(cursor)
        async with self.db.read() as conn:
            await self._prompt(conn, caller, prompt_id)
            below = _version_cursor(after[1]) if after is not None else None
            rows = await repo.versions(conn, prompt_id, limit=limit + 1, below=below)
        has_more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if has_more else None
        return {
            "data": [version_resource(r) for r in rows],
            "next_cursor": encode_cursor(last["created_at"], str(last["version"]))
            if last
            else None,
            "has_more": has_more,
        }

    # -- model configs ------------------------------------------------------------------

    async def create_config(self, caller: Caller, body: ModelConfigCreate) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": new_id("mcf"),
            "workspace_id": caller.workspace_id,
            "name": body.name,
            "model_id": body.model_id,
            "temperature": body.temperature,
            "max_tokens": body.max_tokens,
            "response_format": response_format(body.response_format),
            "created_by": caller.actor,
            "created_at": utcnow(),
        }
        try:
            async with self.db.write() as tx:
                if not await llm_repo.model_exists(tx.conn, caller.workspace_id, body.model_id):
                    raise LlmModelNotFound(f"llm model {body.model_id} not found")
                if await repo.named(tx.conn, model_configs, caller.workspace_id, body.name):
                    raise _exists("model config", body.name)
                await repo.insert(tx.conn, model_configs, row)
                await self.audit.record(
                    tx,
                    caller,
                    "model_config.create",
                    "model_config",
                    row["id"],
                    {"name": body.name, "model_id": body.model_id},
                )
        except IntegrityError as exc:
            raise _exists("model config", body.name) from exc
        return config_resource(row)

    async def get_config(self, caller: Caller, config_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await repo.get(conn, model_configs, caller.workspace_id, config_id)
        if row is None:
            raise not_found("model config", config_id, "model_config_not_found")
        return config_resource(row)

    async def list_configs(
        self, caller: Caller, *, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        return await self._list(caller, model_configs, config_resource, limit, cursor)

    async def delete_config(self, caller: Caller, config_id: str) -> None:
        await self._delete(caller, model_configs, config_id, "model config", "model_config")

    # -- documents ----------------------------------------------------------------------

    # -- extract runs -------------------------------------------------------------------

    async def check_run_input(
        self, conn: Conn, caller: Caller, value: dict[str, Any]
    ) -> dict[str, Any]:
        """An ``extract`` run's input, checked when the run is created: each id must exist
        (404 naming the first missing one) and every declared variable have a value. An
        absent ``prompt_version`` is set to the latest, so the run records what it ran."""
        spec = _input(value)
        version = await self.resolve_version(conn, caller, spec.prompt_id, spec.prompt_version)
        await self.require_configs(conn, caller, [spec.config_id])
        await self.require_documents(conn, caller, [spec.document_id])
        check_variables(version, spec.variables)
        return {**value, "prompt_version": version["version"]}

    async def resolve_version(
        self, conn: Conn, caller: Caller, prompt_id: str, number: int | None
    ) -> dict[str, Any]:
        """The prompt's version ``number`` (None: its latest); 404 when either is missing."""
        prompt = await self._prompt(conn, caller, prompt_id)
        found = await repo.version(conn, prompt_id, number or prompt["latest_version"])
        if found is None:
            raise _versionnot_found(prompt_id, number)
        return found

    async def require_configs(self, conn: Conn, caller: Caller, ids: list[str]) -> None:
        found = await repo.existing(conn, model_configs, caller.workspace_id, ids)
        for item_id in ids:
            if item_id not in found:
                raise not_found("model config", item_id, "model_config_not_found")

    async def require_documents(self, conn: Conn, caller: Caller, ids: list[str]) -> None:
        found = await repo.existing(conn, documents, caller.workspace_id, ids)
        for item_id in ids:
            if item_id not in found:
                raise not_found("document", item_id, "document_not_found")

    async def job(self, workspace_id: str, value: dict[str, Any]) -> ExtractionJob:
        """What an extraction of ``value`` (an extract input) executes; 404s as at create
        when something was deleted since."""
        caller = Caller(workspace_id=workspace_id, actor="runyard:worker")
        spec = _input(value)
        async with self.db.read() as conn:
            version = await self.resolve_version(conn, caller, spec.prompt_id, spec.prompt_version)
            config = await repo.get(conn, model_configs, workspace_id, spec.config_id)
            document = await repo.get(conn, documents, workspace_id, spec.document_id)
        if config is None:
            raise not_found("model config", spec.config_id, "model_config_not_found")
        if document is None:
            raise not_found("document", spec.document_id, "document_not_found")
        check_variables(version, spec.variables)
        return ExtractionJob(
            prompt_id=spec.prompt_id,
            prompt_version=version["version"],
            config_id=spec.config_id,
            document_id=spec.document_id,
            model_id=config["model_id"],
            temperature=config["temperature"],
            max_tokens=config["max_tokens"],
            response_format=config["response_format"],
            template=version["template"],
            variables=spec.variables,
            document=document["content"],
            ground_truth=document["ground_truth"],
        )

    # -- shared -------------------------------------------------------------------------

    async def _list(
        self, caller: Caller, table: sa.Table, resource: Any, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        after = decode_cursor(cursor)
        async with self.db.read() as conn:
            rows = await repo.page(conn, table, caller.workspace_id, limit=limit + 1, after=after)
        items, next_cursor, has_more = page_of(rows, limit)
        return {
            "data": [resource(r) for r in items],
            "next_cursor": next_cursor,
            "has_more": has_more,
        }

    async def _delete(
        self, caller: Caller, table: sa.Table, item_id: str, kind: str, target: str
    ) -> None:
        async with self.db.write() as tx:
            row = await repo.get(tx.conn, table, caller.workspace_id, item_id, columns=("id",))
            if row is None:
                raise not_found(kind, item_id, f"{target}_not_found")
            await repo.delete(tx.conn, table, item_id)
            await self.audit.record(tx, caller, f"{target}.delete", target, item_id)


def _input(value: dict[str, Any]) -> ExtractInput:
    try:
        return ExtractInput.model_validate(value)
    except ValidationError as exc:
        raise InvalidInput(
            "an extract run's input is {prompt_id, prompt_version?, config_id, document_id, "
            "variables?}",
            errors=[
                {"loc": ["body", "input", *error["loc"]], "msg": error["msg"]}
                for error in exc.errors()
            ],
        ) from exc


def check_variables(version: dict[str, Any], given: dict[str, Any]) -> None:
    missing = prompting.missing_variables(version["variables"], given)
    if missing:
        raise InvalidInput(
            f"prompt {version['prompt_id']} version {version['version']} needs variables: "
            + ", ".join(missing),
            errors=[
                {"loc": ["body", "input", "variables", name], "msg": "Field required"}
                for name in missing
            ],
        )


def _versionnot_found(prompt_id: str, number: int | None) -> NotFound:
    if number is None:
        return NotFound(
            f"prompt {prompt_id} has no version yet (POST /v1/prompts/{prompt_id}/versions)",
            code="prompt_version_not_found",
        )
    return NotFound(f"prompt {prompt_id} has no version {number}", code="prompt_version_not_found")


def _exists(kind: str, name: str) -> Conflict:
    return Conflict(
        f"a {kind} named {name!r} already exists", code=f"{kind.replace(' ', '_')}_exists"
    )


def _version_cursor(text: str) -> int:
    if not text.isdigit():
        raise BadRequest(
            "the cursor is not one this list issued",
            code="invalid_cursor",
            errors=[{"loc": ["query", "cursor"], "msg": "not a cursor from this list"}],
        )
    return int(text)
