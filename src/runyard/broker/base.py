"""The broker seam: live fan-out of hints between server processes.

The broker carries copies, never the truth: a subscriber that misses a message (overflow,
reconnect) reads what it missed from the database. Implementations: :mod:`.memory`.
"""

import asyncio
from collections import deque
from typing import Protocol


class Subscription:
    """A bounded buffer of messages for one subscriber of one channel.

    When the buffer is full, new messages are dropped and :attr:`overflowed` is set, so the
    subscriber knows to recover from the source of truth instead of losing data silently.
    """

    def __init__(self, channel: str, maxsize: int) -> None:
        self.channel = channel
        self.maxsize = maxsize
        self.overflowed = False
        self._buffer: deque[bytes] = deque()
        self._ready = asyncio.Event()

    def feed(self, message: bytes) -> None:
        if len(self._buffer) >= self.maxsize:
            self.overflowed = True
        else:
            self._buffer.append(message)
        self._ready.set()

    async def wait(self, seconds: float) -> bool:
        """Wait until something is buffered (or overflowed); False on timeout."""
        if self._buffer or self.overflowed:
            return True
        try:
            async with asyncio.timeout(seconds):  # no task per wait, unlike wait_for
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    def drain(self) -> tuple[list[bytes], bool]:
        """Everything buffered, and whether messages were dropped since the last drain."""
        messages = list(self._buffer)
        overflowed = self.overflowed
        self._buffer.clear()
        self.overflowed = False
        self._ready.clear()
        return messages, overflowed


class Broker(Protocol):
    async def publish(self, channel: str, message: bytes) -> None:
        """Deliver ``message`` to current subscribers of ``channel`` (best effort)."""

    async def subscribe(self, channel: str, maxsize: int) -> Subscription:
        """Start receiving messages published to ``channel`` from now on."""

    async def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to ``subscription``."""

    async def ping(self) -> None:
        """Raise when the broker cannot be reached."""

    async def close(self) -> None:
        """Release connections; subscriptions stop receiving."""
