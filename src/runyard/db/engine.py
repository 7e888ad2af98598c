"""The database handle: connections, transactions, and the post-commit hook.

Writes go through :meth:`Database.write`, which yields a :class:`Tx`; work registered with
:meth:`Tx.after_commit` (publishing to the broker) runs only once the transaction has committed.

PostgreSQL runs on SQLAlchemy's async engine (asyncpg). SQLite runs on the synchronous engine,
inline on the event loop's thread (see docs/decisions/0002): its statements answer in
microseconds, while an async adapter costs a thread round trip and a greenlet switch per
statement. Writes in this process are serialised by an asyncio lock and open with
``BEGIN IMMEDIATE``, so a writer never waits on SQLite's lock; readers run concurrently (WAL).
Both kinds of connection are used through the same small :class:`Conn` interface. The few
long reads (aggregates over many runs) ask for ``read(off_loop=True)``: on SQLite their
statements run in a worker thread, so the event loop serves everyone else meanwhile.
"""

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, Engine, Result, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.base import Executable

from runyard.db import sqlite_bulk

log = logging.getLogger(__name__)
T = TypeVar("T")

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA cache_size=-32000",
    "PRAGMA temp_store=MEMORY",
)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class Conn(ABC):
    """A connection inside a transaction, the same for both databases."""

    dialect: Dialect

    @abstractmethod
    async def execute(self, statement: Executable, parameters: Any = None) -> Result[Any]: ...

    @abstractmethod
    async def run_sync(self, fn: Callable[[Connection], T]) -> T: ...

    @abstractmethod
    async def insert_many(self, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows with the same keys in one batch (straight through the driver on SQLite)."""


class _AsyncConn(Conn):
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self.dialect = conn.dialect

    async def execute(self, statement: Executable, parameters: Any = None) -> Result[Any]:
        return await self._conn.execute(statement, parameters)

    async def run_sync(self, fn: Callable[[Connection], T]) -> T:
        return await self._conn.run_sync(fn)

    async def insert_many(self, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        await self._conn.execute(sa.insert(table), list(rows))


class _InlineConn(Conn):
    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect

    async def execute(self, statement: Executable, parameters: Any = None) -> Result[Any]:
        return self._conn.execute(statement, parameters)

    async def run_sync(self, fn: Callable[[Connection], T]) -> T:
        return fn(self._conn)

    async def insert_many(self, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        sqlite_bulk.insert_many(self._conn.connection.driver_connection, table, rows)


class _OffLoopConn(_InlineConn):
    """A SQLite read whose statements run in a worker thread, results fetched there too.
    ``sqlite3`` lets go of the GIL while a statement runs, so the event loop keeps serving.
    A cancelled caller interrupts the statement and waits for the thread to let go of the
    connection before the transaction ends (never two threads in one connection at once)."""

    async def execute(self, statement: Executable, parameters: Any = None) -> Result[Any]:
        def run() -> Any:
            return self._conn.execute(statement, parameters).freeze()

        work = asyncio.ensure_future(asyncio.to_thread(run))
        try:
            frozen = await asyncio.shield(work)
        except asyncio.CancelledError:
            driver: Any = self._conn.connection.driver_connection
            driver.interrupt()
            await asyncio.wait([work])
            if not work.cancelled():
                work.exception()  # the interrupted statement's error: seen, not logged as lost
            raise
        result: Result[Any] = frozen()
        return result


class Tx:
    """A write transaction in progress: its connection and what to do after commit."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self._after_commit: list[Callable[[], Awaitable[None]]] = []
        #: what a service learned earlier in this transaction (e.g. a stream's mirror)
        self.memo: dict[Any, Any] = {}

    def after_commit(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._after_commit.append(callback)


class Database:
    def __init__(self, url: str, *, schema: str | None = None, pool_size: int = 10) -> None:
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        self.schema = schema
        json_args: dict[str, Any] = {
            "json_serializer": _json_dumps,
            "json_deserializer": orjson.loads,
        }
        self._async_engine: AsyncEngine | None = None
        self._sync_engine: Engine | None = None
        self._write_lock: asyncio.Lock | None = None
        if self.dialect == "sqlite":
            database = parsed.database or ":memory:"
            if database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self._sync_engine = sa.create_engine(
                parsed.set(drivername="sqlite+pysqlite"),
                pool_size=pool_size,
                max_overflow=pool_size,
                connect_args={"check_same_thread": False},
                **json_args,
            )
            _install_sqlite_hooks(self._sync_engine)
            self._write_lock = asyncio.Lock()
        else:
            connect_args = {"server_settings": {"search_path": schema}} if schema else {}
            self._async_engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size * 2,
                pool_pre_ping=True,
                connect_args=connect_args,
                **json_args,
            )

    @property
    def is_sqlite(self) -> bool:
        return self._sync_engine is not None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        """A write transaction; after-commit callbacks run once it has committed."""
        lock = self._write_lock if self._write_lock is not None else nullcontext()
        async with lock, self._transaction(write=True) as conn:
            tx = Tx(conn)
            yield tx
        for callback in tx._after_commit:
            try:
                await callback()
            except Exception:  # the database is the truth; a lost hint is recovered by readers
                log.exception("after-commit callback failed")

    @asynccontextmanager
    async def read(self, *, off_loop: bool = False) -> AsyncIterator[Conn]:
        """A read-only transaction (a consistent snapshot for multi-statement reads).
        ``off_loop``: its statements are long (aggregates over many rows); on SQLite they run
        in a worker thread instead of holding up the event loop (PostgreSQL's never do)."""
        async with self._transaction(write=False, off_loop=off_loop) as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(self, *, write: bool, off_loop: bool = False) -> AsyncIterator[Conn]:
        if self._sync_engine is not None:
            with self._sync_engine.connect() as sync_conn:
                if write:
                    sync_conn.execution_options(runyard_immediate=True)
                with sync_conn.begin():
                    yield _OffLoopConn(sync_conn) if off_loop else _InlineConn(sync_conn)
            return
        assert self._async_engine is not None
        async with self._async_engine.begin() as async_conn:
            yield _AsyncConn(async_conn)

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        if self._sync_engine is not None:
            self._sync_engine.dispose()
        if self._async_engine is not None:
            await self._async_engine.dispose()


def _install_sqlite_hooks(engine: Engine) -> None:
    """Pragmas on connect; ``BEGIN IMMEDIATE`` for writes, deferred ``BEGIN`` for reads."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # autocommit in the driver: we emit BEGIN
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # straight to the driver: SQLAlchemy's execution pipeline would cost more than SQLite
        conn.connection.driver_connection.execute(
            "BEGIN IMMEDIATE" if conn.get_execution_options().get("runyard_immediate") else "BEGIN"
        )
