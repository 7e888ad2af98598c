"""Request rates (``RUNYARD_RATE_LIMIT_PER_SECOND``): off by default; on, a token bucket per
API key (a session counts as its key, a runner token as its run, open mode as the client
address), answering 429 with ``Retry-After`` beyond it."""

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support import assert_problem, make_pipeline, make_run

pytestmark = pytest.mark.anyio


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def make_key(
    client: httpx.AsyncClient, role: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/v1/api-keys", json={"name": f"{role} key", "role": role}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def assert_limited(response: httpx.Response) -> int:
    """The 429 problem's ``Retry-After`` (whole seconds, at least 1)."""
    body = assert_problem(response, 429, "rate_limited")
    seconds = int(response.headers["retry-after"])
    assert seconds >= 1 and body["retry_after"] == seconds
    return seconds


async def test_rates_are_not_limited_by_default(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert app.state.services.limiter is None
    admin = bearer((await make_key(client, "admin"))["secret"])
    answers = await asyncio.gather(*(client.get("/v1/runs", headers=admin) for _ in range(60)))
    assert {a.status_code for a in answers} == {200}


@pytest.mark.settings(rate_limit_per_second=0.5, rate_limit_burst=3)
async def test_a_key_gets_its_burst_then_429_with_retry_after(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = bearer((await make_key(client, "admin"))["secret"])  # open mode's bucket
    alice = await make_key(client, "member", admin)
    bob = await make_key(client, "member", admin)
    as_alice = bearer(alice["secret"])
    for _ in range(3):
        assert (await client.get("/v1/runs", headers=as_alice)).status_code == 200
    refused = await client.get("/v1/runs", headers=as_alice)
    assert assert_limited(refused) in (1, 2)  # a token every 2 s
    assert "rate_limited" in refused.json()["type"]
    # writes are limited like reads
    assert_limited(await client.post("/v1/runs", json={"pipeline": "x"}, headers=as_alice))

    # bob's bucket is his own; a session counts against its key
    login = await client.post("/v1/auth/login", json={"api_key": bob["secret"]})
    assert login.status_code == 200, login.text
    client.cookies.clear()
    cookie = {"Cookie": f"runyard_session={login.cookies['runyard_session']}"}
    assert (await client.get("/v1/runs", headers=cookie)).status_code == 200
    assert (await client.get("/v1/runs", headers=bearer(bob["secret"]))).status_code == 200
    assert_limited(await client.get("/v1/runs", headers=cookie))
    assert_limited(await client.get("/v1/auth/session", headers=cookie))
    assert_limited(await client.get("/v1/runs", headers=bearer(bob["secret"])))

    # never limited: health and metrics
    for _ in range(10):
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200


@pytest.mark.settings(rate_limit_per_second=1.0, rate_limit_burst=2)
async def test_a_limited_key_recovers_after_retry_after(client: httpx.AsyncClient) -> None:
    admin = bearer((await make_key(client, "admin"))["secret"])
    key = bearer((await make_key(client, "viewer", admin))["secret"])
    statuses = [(await client.get("/v1/runs", headers=key)).status_code for _ in range(2)]
    assert statuses == [200, 200]
    seconds = assert_limited(await client.get("/v1/runs", headers=key))
    await asyncio.sleep(seconds)
    assert (await client.get("/v1/runs", headers=key)).status_code == 200
    assert_limited(await client.get("/v1/runs", headers=key))


@pytest.mark.settings(rate_limit_per_second=0.5, rate_limit_burst=3)
async def test_open_mode_is_limited_by_client_address(client: httpx.AsyncClient) -> None:
    users = ("alice", "bob", "carol")  # headers do not make new buckets
    for user in users:
        assert (await client.get("/v1/runs", headers={"X-User-Id": user})).status_code == 200
    assert_limited(await client.get("/v1/runs", headers={"X-User-Id": "dave"}))


@pytest.mark.settings(rate_limit_per_second=0.5, rate_limit_burst=4)
async def test_a_runner_token_is_limited_per_run(client: httpx.AsyncClient) -> None:
    admin = bearer((await make_key(client, "admin"))["secret"])
    runner = bearer((await make_key(client, "runner", admin))["secret"])
    await make_pipeline(client, headers=admin)
    runs = [await make_run(client, headers=admin) for _ in range(2)]
    tokens = []
    for _ in runs:  # two of the runner key's four requests
        claimed = await client.post("/v1/runner/claim", json={}, headers=runner)
        assert claimed.status_code == 200, claimed.text
        tokens.append((claimed.json()["run"]["id"], bearer(claimed.json()["token"])))
    (first, as_first), (second, as_second) = tokens
    for _ in range(4):
        beat = await client.post(f"/v1/runner/runs/{first}/heartbeat", json={}, headers=as_first)
        assert beat.status_code == 200, beat.text
    assert_limited(
        await client.post(f"/v1/runner/runs/{first}/heartbeat", json={}, headers=as_first)
    )
    # the other run's token, and the key that claimed them, have buckets of their own
    beat = await client.post(f"/v1/runner/runs/{second}/heartbeat", json={}, headers=as_second)
    assert beat.status_code == 200, beat.text
    assert (await client.post("/v1/runner/claim", json={}, headers=runner)).status_code in (
        200,
        204,
    )
