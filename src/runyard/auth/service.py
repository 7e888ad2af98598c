"""API keys: create, list, revoke, authenticate; and whether the server is in open mode."""

import time
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from runyard.audit.service import AuditService
from runyard.auth import keys
from runyard.auth.tables import api_keys
from runyard.clock import isoformat, utcnow
from runyard.context import Caller
from runyard.db.engine import Database
from runyard.ids import new_id
from runyard.problems import InvalidInput, NotFound, Unauthorized

ROLES = ("admin", "member", "viewer", "runner")
#: how long a key read from the database is trusted (a revocation on another replica takes
#: effect within this; on this one at once)
KEY_CACHE_SECONDS = 2.0
#: how long "no key exists yet" is trusted (the first key, made elsewhere, ends open mode
#: here within this)
OPEN_MODE_CACHE_SECONDS = 1.0


def key_resource(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "api_key",
        "workspace_id": row["workspace_id"],
        "name": row["name"],
        "role": row["role"],
        "prefix": row["prefix"],
        "can_impersonate": row["can_impersonate"],
        "created_by": row["created_by"],
        "created_at": isoformat(row["created_at"]),
        "expires_at": isoformat(row["expires_at"]),
        "revoked_at": isoformat(row["revoked_at"]),
    }


class ApiKeyService:
    def __init__(self, db: Database, audit: AuditService) -> None:
        self.db = db
        self.audit = audit
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._keys_exist = False
        self._open_checked_at = -1e9

    async def create(
        self,
        caller: Caller,
        *,
        name: str,
        role: str,
        expires_at: datetime | None = None,
        can_impersonate: bool = False,
    ) -> dict[str, Any]:
        """A new key of the caller's workspace; the answer holds its secret, never shown again."""
        if role not in ROLES:
            raise InvalidInput(
                f"role {role!r} is not one of {', '.join(ROLES)}",
                errors=[{"loc": ["body", "role"], "msg": f"one of {', '.join(ROLES)}"}],
            )
        now = utcnow()
        if expires_at is not None and expires_at <= now:
            raise InvalidInput(
                "expires_at is in the past",
                errors=[{"loc": ["body", "expires_at"], "msg": "must be in the future"}],
            )
        prefix, secret = keys.new_secret()
        key_id = new_id("key")
        row: dict[str, Any] = {
            "id": key_id,
            "workspace_id": caller.workspace_id,
            "name": name,
            "role": role,
            "prefix": prefix,
            "secret_hash": keys.digest(secret),
            "can_impersonate": can_impersonate,
            "created_by": caller.actor,
            "created_at": now,
            "expires_at": expires_at,
            "revoked_at": None,
        }
        async with self.db.write() as tx:
            await tx.conn.execute(sa.insert(api_keys).values(**row))
            await self.audit.record(
                tx, caller, "api_key.create", "api_key", key_id, {"name": name, "role": role}
            )
        self._keys_exist = True
        return {**key_resource(row), "secret": secret}

    async def list(self, caller: Caller) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(api_keys)
                .where(api_keys.c.workspace_id == caller.workspace_id)
                .order_by(api_keys.c.created_at.desc(), api_keys.c.id.desc())
            )
            return [key_resource(dict(r._mapping)) for r in rows]

    async def revoke(self, caller: Caller, key_id: str) -> None:
        """Revoke a key of the caller's workspace (idempotent); 404 for any other."""
        async with self.db.write() as tx:
            found = await tx.conn.execute(
                sa.select(api_keys.c.prefix, api_keys.c.revoked_at).where(
                    api_keys.c.id == key_id, api_keys.c.workspace_id == caller.workspace_id
                )
            )
            row = found.first()
            if row is None:
                raise NotFound(f"API key {key_id} not found", code="api_key_not_found")
            if row.revoked_at is None:
                await tx.conn.execute(
                    sa.update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=utcnow())
                )
                await self.audit.record(tx, caller, "api_key.revoke", "api_key", key_id, {})
        self._cache.pop(row.prefix, None)

    async def authenticate(self, secret: str) -> dict[str, Any]:
        """The key a bearer secret names; 401 when it is unknown, wrong, expired or revoked."""
        prefix = keys.prefix_of(secret)
        row = await self._by_prefix(prefix) if prefix else None
        if row is None or not keys.matches(secret, row["secret_hash"]):
            raise Unauthorized("the API key is not valid")
        if row["revoked_at"] is not None:
            raise Unauthorized("the API key was revoked")
        if row["expires_at"] is not None and row["expires_at"] <= utcnow():
            raise Unauthorized("the API key has expired")
        return row

    async def active(self, prefix: str) -> dict[str, Any] | None:
        """The key with this prefix if it is neither revoked nor expired (cached like
        :meth:`authenticate`; a revocation on this replica shows at once)."""
        row = await self._by_prefix(prefix)
        if row is None or row["revoked_at"] is not None:
            return None
        if row["expires_at"] is not None and row["expires_at"] <= utcnow():
            return None
        return row

    async def _by_prefix(self, prefix: str) -> dict[str, Any] | None:
        cached = self._cache.get(prefix)
        now = time.monotonic()
        if cached is not None and now - cached[0] < KEY_CACHE_SECONDS:
            return cached[1]
        async with self.db.read() as conn:
            found = await conn.execute(sa.select(api_keys).where(api_keys.c.prefix == prefix))
            first = found.first()
        row = dict(first._mapping) if first is not None else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[prefix] = (now, row)
        return row

    async def open_mode(self) -> bool:
        """True while no API key exists (DESIGN §4, §15): the first key ends open mode for the
        whole server, and it never comes back (revoked keys still count)."""
        if self._keys_exist:
            return False
        now = time.monotonic()
        if now - self._open_checked_at < OPEN_MODE_CACHE_SECONDS:
            return True
        async with self.db.read() as conn:
            found = await conn.execute(sa.select(api_keys.c.id).limit(1))
            self._keys_exist = found.first() is not None
        self._open_checked_at = now
        return not self._keys_exist
