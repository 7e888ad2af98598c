"""Broker implementations, chosen by URL scheme."""

from runyard.broker.base import Broker, Subscription
from runyard.broker.memory import MemoryBroker


def broker_from_url(url: str) -> Broker:
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        return MemoryBroker()
    raise ValueError(f"unsupported broker URL scheme {scheme!r} (supported: memory://)")


__all__ = ["Broker", "MemoryBroker", "Subscription", "broker_from_url"]
