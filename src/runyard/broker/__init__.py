"""Broker implementations, chosen by URL scheme."""

import asyncio

from runyard.broker.base import Broker, Subscription
from runyard.broker.memory import MemoryBroker


async def wait_for_executor(
    subscription: Subscription, executor: bytes | tuple[bytes, ...], seconds: float
) -> None:
    """Wait until a wake-up for runs of ``executor`` (or any of several) arrives (or
    ``seconds`` pass; also when wake-ups were dropped, since one of them may have been ours)."""
    wanted = (executor,) if isinstance(executor, bytes) else executor
    deadline = asyncio.get_running_loop().time() + seconds
    while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
        if not await subscription.wait(remaining):
            return
        messages, overflowed = subscription.drain()
        if overflowed or b"*" in messages or any(e in messages for e in wanted):
            return


def broker_from_url(url: str) -> Broker:
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        return MemoryBroker()
    if scheme in ("redis", "rediss"):
        from runyard.broker.redis import RedisBroker

        return RedisBroker(url)
    raise ValueError(f"unsupported broker URL scheme {scheme!r} (supported: memory://, redis://)")


__all__ = ["Broker", "MemoryBroker", "Subscription", "broker_from_url", "wait_for_executor"]
