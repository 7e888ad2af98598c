"""Redis pub/sub broker: fan-out between server replicas.

One pub/sub connection per server process carries every channel this process listens to; a
reader task hands messages to the local :class:`Subscription` buffers. :meth:`subscribe` returns
only after Redis has confirmed the subscription, so a subscriber that replays from the database
next cannot miss an event published in between.
"""

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from runyard.broker.base import Subscription

log = logging.getLogger(__name__)


class RedisBroker:
    def __init__(self, url: str) -> None:
        self._redis: Redis = Redis.from_url(url)
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._local: dict[str, set[Subscription]] = defaultdict(set)
        self._confirmed: dict[str, asyncio.Event] = {}
        self._lock = asyncio.Lock()

    async def publish(self, channel: str, message: bytes) -> None:
        await self._redis.publish(channel, message)

    async def subscribe(self, channel: str, maxsize: int) -> Subscription:
        subscription = Subscription(channel, maxsize)
        async with self._lock:
            first = not self._local[channel]
            self._local[channel].add(subscription)
            if first:
                confirmed = self._confirmed[channel] = asyncio.Event()
                if self._pubsub is None:
                    self._pubsub = self._redis.pubsub()
                await self._pubsub.subscribe(channel)
                if self._reader is None or self._reader.done():  # after the connection exists
                    self._reader = asyncio.get_running_loop().create_task(self._read())
            else:
                confirmed = self._confirmed[channel]
        await asyncio.wait_for(confirmed.wait(), 10)
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        async with self._lock:
            local = self._local.get(subscription.channel)
            if local is None:
                return
            local.discard(subscription)
            if not local:
                del self._local[subscription.channel]
                self._confirmed.pop(subscription.channel, None)
                if self._pubsub is not None:
                    await self._pubsub.unsubscribe(subscription.channel)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()
        self._local.clear()
        await self._redis.aclose()

    async def _read(self) -> None:
        while True:  # ends when close() cancels it; idles in 1 s socket reads
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError):
                log.warning("redis pub/sub connection lost; subscribers recover from the database")
                for subscriptions in self._local.values():
                    for subscription in subscriptions:
                        subscription.overflowed = True  # they may have missed messages
                        subscription._ready.set()
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            channel = message["channel"].decode()
            if message["type"] == "subscribe":
                event = self._confirmed.get(channel)
                if event is not None:
                    event.set()
            elif message["type"] == "message":
                for subscription in tuple(self._local.get(channel, ())):
                    subscription.feed(message["data"])
