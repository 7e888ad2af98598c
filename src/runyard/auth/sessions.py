"""Dashboard sessions (DESIGN §4): an API key logs a browser in.

The browser gets an HTTP-only cookie holding a random secret (``rys_`` + 256 bits); the server
keeps its SHA-256 and finds the session by it. A session acts as its key: same workspace, role
and actor, and the key is checked on every request, so revoking or expiring the key ends its
sessions at once (within the key cache's 2 s on other replicas). Requests that change things
must also send the session's CSRF token (``X-CSRF-Token``), which a cross-site page cannot read.
"""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from runyard.audit.service import AuditService
from runyard.auth.service import ApiKeyService
from runyard.auth.tables import api_keys, dashboard_sessions
from runyard.clock import isoformat, utcnow
from runyard.context import Caller
from runyard.db.engine import Database
from runyard.ids import new_id
from runyard.problems import Forbidden, Unauthorized

COOKIE_NAME = "runyard_session"
CSRF_HEADER = "X-CSRF-Token"
SECRET_SCHEME = "rys"
#: how long a session read from the database is trusted (a logout on another replica takes
#: effect within this; on this one at once)
SESSION_CACHE_SECONDS = 2.0
_CACHE_LIMIT = 10_000


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def csrf_matches(token: str | None, expected: str) -> bool:
    return token is not None and hmac.compare_digest(
        token.encode("utf-8", "surrogateescape"), expected.encode()
    )


@dataclass(frozen=True, slots=True)
class Session:
    """A live session and what its key allows."""

    id: str
    secret_hash: str
    workspace_id: str
    key_id: str
    role: str
    can_impersonate: bool
    csrf_token: str
    created_at: datetime
    expires_at: datetime

    def csrf_ok(self, token: str | None) -> bool:
        """Whether ``token`` is this session's CSRF token (compared in constant time)."""
        return csrf_matches(token, self.csrf_token)

    def resource(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "session",
            "workspace_id": self.workspace_id,
            "role": self.role,
            "key_id": self.key_id,
            "csrf_token": self.csrf_token,
            "created_at": isoformat(self.created_at),
            "expires_at": isoformat(self.expires_at),
        }


class SessionService:
    def __init__(
        self, db: Database, audit: AuditService, keys: ApiKeyService, lifetime: timedelta
    ) -> None:
        self.db = db
        self.audit = audit
        self.keys = keys
        self.lifetime = lifetime
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def login(self, key: dict[str, Any], request_id: str | None) -> tuple[str, Session]:
        """A new session for an authenticated key (:meth:`ApiKeyService.authenticate`):
        ``(cookie secret, session)``. 403 for a runner key."""
        if key["role"] == "runner":
            raise Forbidden("a runner key cannot open a dashboard session")
        now = utcnow()
        expires_at = now + self.lifetime
        if key["expires_at"] is not None:
            expires_at = min(expires_at, key["expires_at"])
        secret = f"{SECRET_SCHEME}_{secrets.token_urlsafe(32)}"
        row: dict[str, Any] = {
            "id": new_id("dss"),
            "secret_hash": _digest(secret),
            "csrf_token": secrets.token_urlsafe(32),
            "key_id": key["id"],
            "workspace_id": key["workspace_id"],
            "created_at": now,
            "expires_at": expires_at,
            "revoked_at": None,
        }
        caller = Caller(workspace_id=key["workspace_id"], actor=key["id"], request_id=request_id)
        async with self.db.write() as tx:
            # ended sessions are useless: each login sweeps the expired ones away
            await tx.conn.execute(
                sa.delete(dashboard_sessions).where(dashboard_sessions.c.expires_at <= now)
            )
            await tx.conn.execute(sa.insert(dashboard_sessions).values(**row))
            await self.audit.record(
                tx, caller, "session.login", "session", row["id"], {"key_id": key["id"]}
            )
        return secret, _session(row, key)

    async def authenticate(self, secret: str) -> Session:
        """The live session a cookie names, acting as its key; 401 when the session is unknown,
        ended or expired, or its key was revoked or has expired."""
        row = await self._live(secret)
        if row is None:
            raise Unauthorized("the session has ended: log in again (POST /v1/auth/login)")
        key = await self.keys.active(row["key_prefix"])
        if key is None or key["id"] != row["key_id"]:
            raise Unauthorized("the session's API key was revoked or has expired")
        return _session(row, key)

    async def logout(self, secret: str, csrf_token: str | None, request_id: str | None) -> bool:
        """End the session a cookie names; False when there is none to end. 403 without the
        session's CSRF token."""
        row = await self._live(secret)
        if row is None:
            return False
        if not csrf_matches(csrf_token, row["csrf_token"]):
            raise Forbidden(f"send the session's CSRF token in {CSRF_HEADER}", code="csrf_failed")
        caller = Caller(
            workspace_id=row["workspace_id"], actor=row["key_id"], request_id=request_id
        )
        async with self.db.write() as tx:
            await tx.conn.execute(
                sa.update(dashboard_sessions)
                .where(
                    dashboard_sessions.c.id == row["id"], dashboard_sessions.c.revoked_at.is_(None)
                )
                .values(revoked_at=utcnow())
            )
            await self.audit.record(
                tx, caller, "session.logout", "session", row["id"], {"key_id": row["key_id"]}
            )
        self._cache.pop(row["secret_hash"], None)
        return True

    async def _live(self, secret: str) -> dict[str, Any] | None:
        """The session row (with its key's prefix) if it is neither ended nor expired."""
        if not secret.startswith(f"{SECRET_SCHEME}_") or len(secret) > 200:
            return None
        digest = _digest(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < SESSION_CACHE_SECONDS:
            row = cached[1]
        else:
            query = (
                sa.select(dashboard_sessions, api_keys.c.prefix.label("key_prefix"))
                .join(api_keys, api_keys.c.id == dashboard_sessions.c.key_id)
                .where(dashboard_sessions.c.secret_hash == digest)
            )
            async with self.db.read() as conn:
                first = (await conn.execute(query)).first()
            row = dict(first._mapping) if first is not None else None
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[digest] = (now, row)
        if row is None or row["revoked_at"] is not None or row["expires_at"] <= utcnow():
            return None
        return row


def _session(row: dict[str, Any], key: dict[str, Any]) -> Session:
    return Session(
        id=row["id"],
        secret_hash=row["secret_hash"],
        workspace_id=row["workspace_id"],
        key_id=row["key_id"],
        role=key["role"],
        can_impersonate=key["can_impersonate"],
        csrf_token=row["csrf_token"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )
