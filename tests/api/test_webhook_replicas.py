"""Webhooks across replicas, and the `RUNYARD_WEBHOOK_URL` subscription (DESIGN §11)."""

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr

from runyard.app import create_app
from runyard.settings import Settings
from tests.support import make_pipeline, make_run
from tests.webhook_support import Receiver, all_status, deliveries, subscribe, wait_for_deliveries

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.settings(webhook_allow_private=True, webhook_retry_base_seconds=0.05),
]


# -- replicas and RUNYARD_WEBHOOK_URL -------------------------------------------------------


@contextlib.asynccontextmanager
async def replicas(*settings: Settings) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Apps on the same database, started together, each with an in-process client. The
    database is made first (by an app started and stopped alone), as a deployment's is."""
    alone = settings[0].model_copy(update={"webhook_url": None, "broker_url": "memory://"})
    async with LifespanManager(create_app(alone), startup_timeout=30):
        pass
    apps = [create_app(s) for s in settings]
    async with contextlib.AsyncExitStack() as stack:
        # (the pusher sometimes needs its 5 s recheck to stop on Redis: reported separately)
        managers = [LifespanManager(a, startup_timeout=30, shutdown_timeout=15) for a in apps]
        await asyncio.gather(*(stack.enter_async_context(m) for m in managers))
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=a), base_url="http://runyard.test"
                )
            )
            for a in apps
        ]
        yield clients


async def test_two_replicas_send_every_message_exactly_once(
    settings: Settings, receiver: Receiver
) -> None:
    async with replicas(settings, settings) as (first, second):
        hook = await subscribe(first, receiver.url, ["run.*"])
        await make_pipeline(first)
        for i in range(10):
            await make_run(first if i % 2 else second)
        requests = await receiver.wait_for(20)
        await asyncio.sleep(0.3)
        ids = [r.headers["webhook-id"] for r in requests]
        assert len(ids) == 20 and len(set(ids)) == 20
        await wait_for_deliveries(first, hook["id"], all_status("delivered", 20))


async def test_the_settings_webhook_is_made_once_and_its_generated_secret_logged(
    settings: Settings, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="runyard.webhooks")
    configured = settings.model_copy(update={"webhook_url": receiver.url})
    async with replicas(configured, configured) as (client, _):  # replicas starting together
        [hook] = (await client.get("/v1/webhooks")).json()["data"]
        assert hook["url"] == receiver.url and hook["events"] == ["run.*"]
        assert hook["workspace_id"] == "ws_default" and hook["created_by"] == "runyard:settings"
        await make_pipeline(client)
        await make_run(client, start=False)
        [request] = await receiver.wait_for(1)
    logged = re.findall(r"whsec_[A-Za-z0-9+/=]+", caplog.text)
    assert len(logged) == 1  # logged once, by the replica that made it
    assert request.verify(logged[0])["event"] == "run.created"

    given = "whsec_" + "B" * 40
    restarted = configured.model_copy(update={"webhook_secret": SecretStr(given)})
    async with replicas(restarted) as (client,):  # a restart: still one, now with that secret
        assert [w["id"] for w in (await client.get("/v1/webhooks")).json()["data"]] == [hook["id"]]
        await make_run(client, start=False)
        await receiver.wait_for(2)
    receiver.requests[1].verify(given)
    assert len(re.findall(r"whsec_[A-Za-z0-9+/=]+", caplog.text)) == 1  # never logged again


@pytest.mark.skipif(
    not os.environ.get("RUNYARD_TEST_REDIS_URL"), reason="RUNYARD_TEST_REDIS_URL is not set"
)
async def test_another_replica_sees_a_new_webhook_at_once(
    settings: Settings, receiver: Receiver
) -> None:
    """Each replica caches a workspace's subscriptions; a change reaches the others through
    the broker, long before the cache would expire by itself."""
    shared = settings.model_copy(update={"broker_url": os.environ["RUNYARD_TEST_REDIS_URL"]})
    async with replicas(shared, shared) as (first, second):
        await make_pipeline(second)
        await make_run(second, start=False)  # the second replica caches "no subscriptions"
        hook = await subscribe(first, receiver.url, ["run.created"])
        deadline = time.monotonic() + 2.0  # well inside the cache's lifetime
        while not await deliveries(first, hook["id"]):
            assert time.monotonic() < deadline, "the second replica kept its stale cache"
            await make_run(second, start=False)
            await asyncio.sleep(0.05)
