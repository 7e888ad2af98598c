"""Broker implementations, chosen by URL scheme."""

from runyard.broker.base import Broker, Subscription
from runyard.broker.memory import MemoryBroker


def broker_from_url(url: str) -> Broker:
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        return MemoryBroker()
    if scheme in ("redis", "rediss"):
        from runyard.broker.redis import RedisBroker

        return RedisBroker(url)
    raise ValueError(f"unsupported broker URL scheme {scheme!r} (supported: memory://, redis://)")


__all__ = ["Broker", "MemoryBroker", "Subscription", "broker_from_url"]
