"""One suite for every Broker implementation (the in-process one today)."""

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from runyard.broker import Broker, Subscription, broker_from_url

pytestmark = pytest.mark.anyio


def redis_url() -> str:
    url = os.environ.get("RUNYARD_TEST_REDIS_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("RUNYARD_TEST_REDIS_URL is not set; CI must test Redis")
        pytest.skip("RUNYARD_TEST_REDIS_URL is not set")
    return url


@pytest.fixture(params=["memory", "redis"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    instance = broker_from_url("memory://" if request.param == "memory" else redis_url())
    yield instance
    await instance.close()


async def _settle(subscription: Subscription, count: int) -> None:
    """Wait (bounded) until ``count`` messages are buffered: delivery through Redis is async."""
    for _ in range(200):
        if len(subscription._buffer) >= count or subscription.overflowed:
            return
        await asyncio.sleep(0.005)


async def test_subscribers_receive_what_is_published_after_they_subscribe(broker: Broker) -> None:
    await broker.publish("c", b"before")
    first = await broker.subscribe("c", maxsize=10)
    second = await broker.subscribe("c", maxsize=10)
    other = await broker.subscribe("d", maxsize=10)
    await broker.publish("c", b"one")
    await broker.publish("c", b"two")
    for subscription in (first, second):
        assert await subscription.wait(1)
        await _settle(subscription, 2)
        assert subscription.drain() == ([b"one", b"two"], False)
    assert not await other.wait(0.05)
    await broker.ping()


async def test_many_channels_and_resubscribing(broker: Broker) -> None:
    subscriptions = [await broker.subscribe(f"ch{n}", maxsize=10) for n in range(20)]
    for n in range(20):
        await broker.publish(f"ch{n}", b"%d" % n)
    for n, subscription in enumerate(subscriptions):
        await subscription.wait(1)
        await _settle(subscription, 1)
        assert subscription.drain() == ([b"%d" % n], False)
        await broker.unsubscribe(subscription)
    again = await broker.subscribe("ch3", maxsize=10)
    await broker.publish("ch3", b"back")
    await again.wait(1)
    await _settle(again, 1)
    assert again.drain() == ([b"back"], False)


async def test_a_full_subscription_drops_and_says_so(broker: Broker) -> None:
    subscription = await broker.subscribe("c", maxsize=2)
    for n in range(5):
        await broker.publish("c", b"%d" % n)
    await _settle(subscription, 3)
    assert subscription.drain() == ([b"0", b"1"], True)
    assert subscription.drain() == ([], False)


async def test_unsubscribed_receive_nothing(broker: Broker) -> None:
    subscription = await broker.subscribe("c", maxsize=2)
    await broker.unsubscribe(subscription)
    await broker.publish("c", b"x")
    await asyncio.sleep(0.05)
    assert subscription.drain() == ([], False)
    await broker.unsubscribe(subscription)  # twice is harmless


async def test_unknown_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported broker"):
        broker_from_url("carrier-pigeon://coop")
