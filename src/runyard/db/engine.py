"""The database handle: engines, transactions, and the post-commit hook.

Writes go through :meth:`Database.write`, which yields a :class:`Tx`. Work registered with
:meth:`Tx.after_commit` (publishing to the broker) runs only once the transaction has committed.
On SQLite, writes in this process are serialised by an asyncio lock and open with
``BEGIN IMMEDIATE``, so writers never spin on ``SQLITE_BUSY``; readers run concurrently (WAL).
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
    "PRAGMA cache_size=-32000",
    "PRAGMA temp_store=MEMORY",
)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class Tx:
    """A write transaction in progress: its connection and what to do after commit."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._after_commit: list[Callable[[], Awaitable[None]]] = []

    def after_commit(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._after_commit.append(callback)


class Database:
    def __init__(self, url: str, *, schema: str | None = None, pool_size: int = 10) -> None:
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        self.schema = schema
        kwargs: dict[str, Any] = {
            "json_serializer": _json_dumps,
            "json_deserializer": orjson.loads,
        }
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size * 2
            kwargs["pool_pre_ping"] = True
            if schema:
                kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        if self.dialect == "sqlite":
            _install_sqlite_hooks(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        """A write transaction; after-commit callbacks run once it has committed."""
        lock = self._write_lock if self._write_lock is not None else nullcontext()
        async with lock, self.engine.connect() as conn:
            if self.is_sqlite:
                await conn.execution_options(runyard_immediate=True)
            async with conn.begin():
                tx = Tx(conn)
                yield tx
        for callback in tx._after_commit:
            try:
                await callback()
            except Exception:  # the database is the truth; a lost hint is recovered by readers
                log.exception("after-commit callback failed")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (a consistent snapshot for multi-statement reads)."""
        async with self.engine.connect() as conn, conn.begin():
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    """Pragmas on connect; ``BEGIN IMMEDIATE`` for writes, deferred ``BEGIN`` for reads."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("runyard_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
