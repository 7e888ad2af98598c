"""One suite for every Broker implementation (the in-process one today)."""

from collections.abc import AsyncIterator

import pytest

from runyard.broker import Broker, broker_from_url

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory://"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    instance = broker_from_url(request.param)
    yield instance
    await instance.close()


async def test_subscribers_receive_what_is_published_after_they_subscribe(broker: Broker) -> None:
    await broker.publish("c", b"before")
    first = await broker.subscribe("c", maxsize=10)
    second = await broker.subscribe("c", maxsize=10)
    other = await broker.subscribe("d", maxsize=10)
    await broker.publish("c", b"one")
    await broker.publish("c", b"two")
    for subscription in (first, second):
        assert await subscription.wait(1)
        assert subscription.drain() == ([b"one", b"two"], False)
    assert not await other.wait(0.05)
    await broker.ping()


async def test_a_full_subscription_drops_and_says_so(broker: Broker) -> None:
    subscription = await broker.subscribe("c", maxsize=2)
    for n in range(5):
        await broker.publish("c", b"%d" % n)
    assert subscription.drain() == ([b"0", b"1"], True)
    assert subscription.drain() == ([], False)


async def test_unsubscribed_receive_nothing(broker: Broker) -> None:
    subscription = await broker.subscribe("c", maxsize=2)
    await broker.unsubscribe(subscription)
    await broker.publish("c", b"x")
    assert subscription.drain() == ([], False)
    await broker.unsubscribe(subscription)  # twice is harmless


async def test_unknown_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported broker"):
        broker_from_url("carrier-pigeon://coop")
