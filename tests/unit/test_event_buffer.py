"""The worker's event buffer: batches in order, nothing lost when it closes mid-write."""

import asyncio

import pytest

from runyard.events.service import NewEvent
from runyard.worker.buffer import EventBuffer

pytestmark = pytest.mark.anyio


class SlowStore:
    """Where batches go: each write takes a while, so a close can land in the middle of one."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.batches: list[list[int]] = []
        self.started = asyncio.Event()

    async def write(self, batch: list[NewEvent]) -> None:
        self.started.set()
        await asyncio.sleep(self.seconds)
        self.batches.append([e.data["n"] for e in batch])


async def test_closing_while_a_batch_is_written_keeps_that_batch_and_the_rest() -> None:
    store = SlowStore(0.2)
    buffer = EventBuffer(store.write, flush_seconds=0)
    buffer.put(NewEvent("log", {"n": 0}))
    await asyncio.wait_for(store.started.wait(), 5)  # the first batch is being written
    for n in range(1, 4):
        buffer.put(NewEvent("log", {"n": n}))
    await buffer.close()
    assert [n for batch in store.batches for n in batch] == [0, 1, 2, 3]
    assert store.batches[0] == [0]


async def test_a_timed_buffer_batches_what_arrives_within_its_window() -> None:
    store = SlowStore(0)
    buffer = EventBuffer(store.write, flush_seconds=0.05)
    for n in range(5):
        buffer.put(NewEvent("log", {"n": n}))
    await asyncio.sleep(0.3)
    await buffer.close()
    assert store.batches == [[0, 1, 2, 3, 4]]


async def test_events_put_from_a_thread_arrive_in_order() -> None:
    store = SlowStore(0)
    buffer = EventBuffer(store.write)

    def produce() -> None:
        for n in range(100):
            buffer.put(NewEvent("log", {"n": n}))

    await asyncio.to_thread(produce)
    await buffer.close()
    assert [n for batch in store.batches for n in batch] == list(range(100))
