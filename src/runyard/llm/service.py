"""LLM providers and models (DESIGN §9, §15): admins register where model calls go, and
callers (agents, ``llm`` steps, extraction) resolve a model to a ready-to-call config.

A provider's API key is encrypted with the server's :class:`SecretBox` before it is written
and decrypted only by :meth:`LlmService.resolve`, per call (nothing is cached, so a changed
or cleared key applies to the next call on every replica). Answers and audit entries say
``api_key_set``; the key itself never leaves this module except inside a ``ResolvedModel``.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from runyard.audit.service import AuditService
from runyard.clock import isoformat, utcnow
from runyard.context import Caller
from runyard.db.engine import Database, Tx
from runyard.http.pagination import decode_cursor, page_of
from runyard.ids import new_id
from runyard.llm import repo
from runyard.llm.schemas import (
    ModelCreate,
    ModelUpdate,
    ProviderCreate,
    ProviderUpdate,
)
from runyard.llm.secrets import SecretBox, SecretUnreadable
from runyard.llm.tables import llm_models, llm_providers
from runyard.llm.types import Prices, ProviderConfig, ResolvedModel
from runyard.problems import (
    Conflict,
    InvalidInput,
    LlmModelDisabled,
    LlmModelNotFound,
    LlmProviderExists,
    LlmProviderKeyUnreadable,
    LlmProviderNotFound,
    NoDefaultModel,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: a write that lost a race on a unique index (a name, the one default) runs again
WRITE_ATTEMPTS = 3


def _provider_not_found(provider_id: str) -> LlmProviderNotFound:
    return LlmProviderNotFound(f"llm provider {provider_id} not found")


def _model_not_found(model_id: str) -> LlmModelNotFound:
    return LlmModelNotFound(f"llm model {model_id} not found")


def _exists(name: str) -> LlmProviderExists:
    return LlmProviderExists(f"an llm provider named {name!r} already exists")


def provider_resource(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "llm_provider",
        "workspace_id": row["workspace_id"],
        "name": row["name"],
        "provider_type": row["provider_type"],
        "base_url": row["base_url"],
        "api_key_set": row["api_key_encrypted"] is not None,
        "is_default": row["is_default"],
        "status": row["status"],
        "created_at": isoformat(row["created_at"]),
        "updated_at": isoformat(row["updated_at"]),
    }


def model_resource(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "llm_model",
        "workspace_id": row["workspace_id"],
        "provider_id": row["provider_id"],
        "model_id": row["model_id"],
        "display_name": row["display_name"],
        "capabilities": row["capabilities"],
        "context_window": row["context_window"],
        "input_price_per_mtok": row["input_price_per_mtok"],
        "output_price_per_mtok": row["output_price_per_mtok"],
        "is_default": row["is_default"],
        "status": row["status"],
        "created_at": isoformat(row["created_at"]),
        "updated_at": isoformat(row["updated_at"]),
    }


def _check_base_url(provider_type: str, base_url: str | None) -> None:
    if provider_type == "openai_compatible" and base_url is None:
        raise InvalidInput(
            "base_url: an openai_compatible provider needs its base_url",
            errors=[{"loc": ["body", "base_url"], "msg": "required for openai_compatible"}],
        )


def _page(rows: list[dict[str, Any]], limit: int, resource: Any) -> dict[str, Any]:
    rows, next_cursor, has_more = page_of(rows, limit)
    return {"data": [resource(r) for r in rows], "next_cursor": next_cursor, "has_more": has_more}


class LlmService:
    def __init__(self, db: Database, audit: AuditService, secrets: SecretBox) -> None:
        self.db = db
        self.audit = audit
        self.secrets = secrets

    # -- providers -------------------------------------------------------------------------

    async def create_provider(self, caller: Caller, body: ProviderCreate) -> dict[str, Any]:
        _check_base_url(body.provider_type, body.base_url)
        now = utcnow()
        row: dict[str, Any] = {
            "id": new_id("prv"),
            "workspace_id": caller.workspace_id,
            "name": body.name,
            "provider_type": body.provider_type,
            "base_url": body.base_url,
            "api_key_encrypted": self._encrypt(body.api_key),
            "is_default": body.is_default,
            "status": body.status,
            "created_by": caller.actor,
            "created_at": now,
            "updated_at": now,
        }
        details = {
            "name": body.name,
            "provider_type": body.provider_type,
            "base_url": body.base_url,
            "api_key_set": body.api_key is not None,
            "is_default": body.is_default,
            "status": body.status,
        }

        async def write(tx: Tx) -> None:
            if await repo.provider_named(tx.conn, caller.workspace_id, body.name) is not None:
                raise _exists(body.name)
            cleared = await self._take_default(tx, llm_providers, row, body.is_default)
            await repo.insert_provider(tx.conn, row)
            await self.audit.record(
                tx, caller, "llm_provider.create", "llm_provider", row["id"], details | cleared
            )

        await self._write(write)
        return provider_resource(row)

    async def list_providers(
        self, caller: Caller, *, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        """The workspace's providers, newest first (keyset cursor)."""
        after = decode_cursor(cursor)
        async with self.db.read() as conn:
            rows = await repo.list_providers(
                conn, caller.workspace_id, limit=limit + 1, after=after
            )
        return _page(rows, limit, provider_resource)

    async def get_provider(self, caller: Caller, provider_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await repo.get_provider(conn, caller.workspace_id, provider_id)
        if row is None:
            raise _provider_not_found(provider_id)
        return provider_resource(row)

    async def update_provider(
        self, caller: Caller, provider_id: str, body: ProviderUpdate
    ) -> dict[str, Any]:
        """Change what the body gives; ``api_key: null`` clears the key, ``base_url: null``
        the URL (400 when that leaves an ``openai_compatible`` provider without one)."""
        changes = body.model_dump(exclude_unset=True)
        values = {name: value for name, value in changes.items() if name != "api_key"}
        details: dict[str, Any] = dict(values)
        if "api_key" in changes:
            values["api_key_encrypted"] = self._encrypt(changes["api_key"])
            details["api_key_set"] = changes["api_key"] is not None

        async def write(tx: Tx) -> dict[str, Any]:
            row = await repo.get_provider(
                tx.conn, caller.workspace_id, provider_id, for_update=True
            )
            if row is None:
                raise _provider_not_found(provider_id)
            merged = row | values
            _check_base_url(merged["provider_type"], merged["base_url"])
            moved = any(
                name in values and values[name] != row[name]
                for name in ("base_url", "provider_type")
            )
            if moved and "api_key" not in changes and row["api_key_encrypted"] is not None:
                # the key was given for the old address: it is not sent to a new one
                values["api_key_encrypted"] = merged["api_key_encrypted"] = None
                details["api_key_set"] = False
            name = values.get("name", row["name"])
            taken = name != row["name"] and await repo.provider_named(
                tx.conn, caller.workspace_id, name
            )
            if taken:
                raise _exists(name)
            if not values:
                return row
            merged["updated_at"] = utcnow()
            cleared = await self._take_default(tx, llm_providers, merged, values.get("is_default"))
            await repo.update_provider(
                tx.conn, provider_id, values | {"updated_at": merged["updated_at"]}
            )
            await self.audit.record(
                tx, caller, "llm_provider.update", "llm_provider", provider_id, details | cleared
            )
            return merged

        return provider_resource(await self._write(write))

    async def delete_provider(self, caller: Caller, provider_id: str) -> None:
        """Delete a provider and its models."""
        async with self.db.write() as tx:
            row = await repo.get_provider(
                tx.conn, caller.workspace_id, provider_id, for_update=True
            )
            if row is None:
                raise _provider_not_found(provider_id)
            deleted = await repo.delete_provider(tx.conn, provider_id)
            await self.audit.record(
                tx,
                caller,
                "llm_provider.delete",
                "llm_provider",
                provider_id,
                {"name": row["name"], "models_deleted": deleted},
            )

    # -- models ----------------------------------------------------------------------------

    async def create_model(
        self, caller: Caller, provider_id: str, body: ModelCreate
    ) -> dict[str, Any]:
        now = utcnow()
        row: dict[str, Any] = {
            "id": new_id("mdl"),
            "workspace_id": caller.workspace_id,
            "provider_id": provider_id,
            "model_id": body.model_id,
            "display_name": body.display_name,
            "capabilities": body.capabilities,
            "context_window": body.context_window,
            "input_price_per_mtok": body.input_price_per_mtok,
            "output_price_per_mtok": body.output_price_per_mtok,
            "is_default": body.is_default,
            "status": body.status,
            "created_at": now,
            "updated_at": now,
        }

        async def write(tx: Tx) -> None:
            # locked: a concurrent delete of the provider waits, then takes this model too
            provider = await repo.get_provider(
                tx.conn, caller.workspace_id, provider_id, for_update=True
            )
            if provider is None:
                raise _provider_not_found(provider_id)
            cleared = await self._take_default(tx, llm_models, row, body.is_default)
            await repo.insert_model(tx.conn, row)
            details = {
                "provider_id": provider_id,
                "model_id": body.model_id,
                "is_default": body.is_default,
                "status": body.status,
            }
            await self.audit.record(
                tx, caller, "llm_model.create", "llm_model", row["id"], details | cleared
            )

        await self._write(write)
        return model_resource(row)

    async def list_models(
        self, caller: Caller, *, limit: int, cursor: str | None, provider_id: str | None = None
    ) -> dict[str, Any]:
        """The workspace's models (or one provider's: 404 when it does not exist), newest
        first (keyset cursor)."""
        after = decode_cursor(cursor)
        async with self.db.read() as conn:
            known = provider_id is None or await repo.get_provider(
                conn, caller.workspace_id, provider_id
            )
            if not known:
                raise _provider_not_found(str(provider_id))
            rows = await repo.list_models(
                conn, caller.workspace_id, limit=limit + 1, after=after, provider_id=provider_id
            )
        return _page(rows, limit, model_resource)

    async def get_model(self, caller: Caller, model_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await repo.get_model(conn, caller.workspace_id, model_id)
        if row is None:
            raise _model_not_found(model_id)
        return model_resource(row)

    async def update_model(
        self, caller: Caller, model_id: str, body: ModelUpdate
    ) -> dict[str, Any]:
        """Change what the body gives; ``null`` clears the optional fields."""
        values = body.model_dump(exclude_unset=True)

        async def write(tx: Tx) -> dict[str, Any]:
            row = await repo.get_model(tx.conn, caller.workspace_id, model_id, for_update=True)
            if row is None:
                raise _model_not_found(model_id)
            if not values:
                return row
            merged = row | values | {"updated_at": utcnow()}
            cleared = await self._take_default(tx, llm_models, merged, values.get("is_default"))
            await repo.update_model(
                tx.conn, model_id, values | {"updated_at": merged["updated_at"]}
            )
            await self.audit.record(
                tx, caller, "llm_model.update", "llm_model", model_id, values | cleared
            )
            return merged

        return model_resource(await self._write(write))

    async def delete_model(self, caller: Caller, model_id: str) -> None:
        async with self.db.write() as tx:
            row = await repo.get_model(tx.conn, caller.workspace_id, model_id, for_update=True)
            if row is None:
                raise _model_not_found(model_id)
            await repo.delete_model(tx.conn, model_id)
            await self.audit.record(
                tx,
                caller,
                "llm_model.delete",
                "llm_model",
                model_id,
                {"provider_id": row["provider_id"], "model_id": row["model_id"]},
            )

    # -- for callers of models -------------------------------------------------------------

    async def resolve(self, workspace_id: str, model_id: str | None) -> ResolvedModel:
        """The model ``model_id`` (an ``mdl_`` id) of the workspace, ready to call; with
        ``None``, the workspace's default model, else its only usable one (active, of an
        active provider).

        Problems: 404 ``llm_model_not_found`` (an unknown id), 400 ``no_default_model``
        (none named and none to choose), 409 ``llm_model_disabled`` (the model or its
        provider is disabled), 503 ``llm_provider_key_unreadable`` (the key was encrypted
        with another secrets key)."""
        async with self.db.read() as conn:
            row = await repo.model_with_provider(conn, workspace_id, model_id)
            if row is None and model_id is None:
                usable = await repo.usable_model_ids(conn, workspace_id, limit=2)
                if len(usable) == 1:
                    model_id = usable[0]
                    row = await repo.model_with_provider(conn, workspace_id, model_id)
                else:
                    raise NoDefaultModel(
                        f"workspace {workspace_id} has no default model and "
                        f"{'no' if not usable else 'more than one'} active model to choose: "
                        "name a model, or create one (POST /v1/llm-providers/{id}/models) or "
                        "set one's is_default: true (PATCH /v1/llm-models/{id})"
                    )
        if row is None:
            raise _model_not_found(str(model_id))  # (or deleted just now)
        if row["status"] != "active":
            raise LlmModelDisabled(f"llm model {row['id']} is disabled")
        if row["provider_status"] != "active":
            raise LlmModelDisabled(
                f"llm model {row['id']}'s provider {row['provider_id']} is disabled"
            )
        return ResolvedModel(
            id=row["id"],
            provider_id=row["provider_id"],
            model=row["model_id"],
            config=ProviderConfig(
                provider_type=row["provider_type"],
                base_url=row["base_url"],
                api_key=self._decrypt(row["provider_id"], row["api_key_encrypted"]),
            ),
            prices=Prices(
                input_per_mtok=row["input_price_per_mtok"],
                output_per_mtok=row["output_price_per_mtok"],
            ),
            context_window=row["context_window"],
        )

    async def exists(self, workspace_id: str, model_id: str) -> bool:
        """Whether the workspace has the model ``model_id`` (whatever its status)."""
        async with self.db.read() as conn:
            return await repo.model_exists(conn, workspace_id, model_id)

    # -- helpers ---------------------------------------------------------------------------

    def _encrypt(self, api_key: str | None) -> str | None:
        return None if api_key is None else self.secrets.encrypt(api_key)

    def _decrypt(self, provider_id: str, token: str | None) -> str | None:
        if token is None:
            return None
        try:
            return self.secrets.decrypt(token)
        except SecretUnreadable:
            log.warning(
                "the API key of llm provider %s does not decrypt with this server's secrets "
                "key: every replica needs the same RUNYARD_SECRETS_KEY (or secrets.key)",
                provider_id,
            )
            raise LlmProviderKeyUnreadable(
                f"the API key of llm provider {provider_id} cannot be decrypted by this "
                "server (its secrets key differs from the one that stored it); set the key "
                "again with PATCH /v1/llm-providers/{id}"
            ) from None

    async def _take_default(
        self, tx: Tx, table: sa.Table, row: dict[str, Any], is_default: bool | None
    ) -> dict[str, Any]:
        """When ``row`` becomes the default, unset the workspace's other default (audit
        details naming it)."""
        if not is_default:
            return {}
        cleared = await repo.clear_default(
            tx.conn, table, row["workspace_id"], row["id"], row["updated_at"]
        )
        return {"replaced_default": cleared[0]} if cleared else {}

    async def _write(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """``work`` in a write transaction, again when it lost a race on a unique index
        (the retry sees the winner: a name taken is 409, a default is taken over)."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                async with self.db.write() as tx:
                    return await work(tx)
            except IntegrityError:
                if attempt == WRITE_ATTEMPTS - 1:
                    break
        raise Conflict("a concurrent change got in the way; retry", code="llm_write_conflict")
