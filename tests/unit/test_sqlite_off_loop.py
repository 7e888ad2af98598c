"""Long SQLite reads (``Database.read(off_loop=True)``) leave the event loop free."""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from runyard.db.engine import Database

pytestmark = pytest.mark.anyio

#: a statement that keeps SQLite busy for a few hundred milliseconds
LONG = sa.text(
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) "
    "SELECT count(*) FROM c"
)
N = 3_000_000


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'off-loop.db'}")
    yield database
    await database.dispose()


async def ticks_while_reading(db: Database, *, off_loop: bool) -> tuple[int, int]:
    """How often a 5 ms ticker ran while the long statement did, and what it counted."""
    ticks, running = 0, True

    async def ticker() -> None:
        nonlocal ticks
        while running:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)  # the ticker is under way
    before = ticks
    async with db.read(off_loop=off_loop) as conn:
        counted = (await conn.execute(LONG, {"n": N})).scalar_one()
    during = ticks - before
    running = False
    await task
    return during, counted


async def test_an_off_loop_read_lets_the_event_loop_run_meanwhile(db: Database) -> None:
    started = time.monotonic()
    inline_ticks, inline_count = await ticks_while_reading(db, off_loop=False)
    inline_seconds = time.monotonic() - started
    off_ticks, off_count = await ticks_while_reading(db, off_loop=True)
    assert inline_count == off_count == N
    assert inline_ticks <= 1  # the loop was held for the whole statement
    assert inline_seconds > 0.1, "the statement is too short to tell anything"
    assert off_ticks >= 10


async def test_a_cancelled_off_loop_read_interrupts_its_statement(db: Database) -> None:
    async def read() -> int:
        async with db.read(off_loop=True) as conn:
            return int((await conn.execute(LONG, {"n": 50 * N})).scalar_one())

    task = asyncio.create_task(read())
    await asyncio.sleep(0.05)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0  # interrupted, not run to its end (~10 s)
    async with db.read(off_loop=True) as conn:  # the connection went back to the pool usable
        assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
