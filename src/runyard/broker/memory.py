"""In-process broker: fan-out within one server process (the embedded default)."""

from collections import defaultdict

from runyard.broker.base import Subscription


class MemoryBroker:
    def __init__(self) -> None:
        self._channels: dict[str, set[Subscription]] = defaultdict(set)

    async def publish(self, channel: str, message: bytes) -> None:
        for subscription in tuple(self._channels.get(channel, ())):
            subscription.feed(message)

    async def subscribe(self, channel: str, maxsize: int) -> Subscription:
        subscription = Subscription(channel, maxsize)
        self._channels[channel].add(subscription)
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._channels.get(subscription.channel)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._channels[subscription.channel]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._channels.clear()
