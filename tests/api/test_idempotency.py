"""Idempotency-Key (DESIGN §3, §15): replays, mismatches, and one effect under concurrency."""

import asyncio

import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from runyard.app import create_app
from runyard.idempotency.tables import idempotency_keys
from runyard.settings import Settings
from tests.support import SSEReader, assert_problem, make_pipeline, make_run

pytestmark = pytest.mark.anyio


async def count_runs(client: httpx.AsyncClient) -> int:
    return len((await client.get("/v1/runs", params={"limit": 200})).json()["data"])


async def test_a_retried_create_returns_the_first_answer(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    key = {"Idempotency-Key": "create-1"}
    body = {"pipeline": "deploy", "input": {"n": 1}}
    first = await client.post("/v1/runs", json=body, headers=key)
    again = await client.post("/v1/runs", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await count_runs(client) == 1

    other = await client.post("/v1/runs", json={**body, "input": {"n": 2}}, headers=key)
    assert_problem(other, 409, "idempotency_key_reused")
    fresh = await client.post("/v1/runs", json=body, headers={"Idempotency-Key": "create-2"})
    assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]
    assert await count_runs(client) == 2


async def test_a_key_belongs_to_its_principal_and_path(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    body = {"pipeline": "deploy"}
    alice = await client.post(
        "/v1/runs", json=body, headers={"Idempotency-Key": "k", "X-User-Id": "alice"}
    )
    bob = await client.post(
        "/v1/runs", json=body, headers={"Idempotency-Key": "k", "X-User-Id": "bob"}
    )
    assert alice.json()["id"] != bob.json()["id"]
    cancelled = await client.post(
        f"/v1/runs/{alice.json()['id']}/cancel", json={}, headers={"Idempotency-Key": "k"}
    )
    assert cancelled.status_code == 200 and cancelled.json()["result"] == "cancelled"
    again = await client.post(
        f"/v1/runs/{alice.json()['id']}/cancel", json={}, headers={"Idempotency-Key": "k"}
    )
    assert again.json() == cancelled.json()  # the first answer, not "already_terminal"
    assert_problem(
        await client.post("/v1/runs", json=body, headers={"Idempotency-Key": "x" * 256}),
        400,
        "invalid_input",
    )


async def test_concurrent_requests_with_one_key_have_one_effect(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    run = await make_run(client)
    await client.post(f"/v1/runner/runs/{run['id']}/status", json={"status": "running"})
    batch = {"events": [{"type": "log", "data": {"i": i}} for i in range(5)]}
    headers = {"Idempotency-Key": "batch-7"}
    answers = await asyncio.gather(
        *(
            client.post(f"/v1/runner/runs/{run['id']}/events", json=batch, headers=headers)
            for _ in range(20)
        )
    )
    statuses = sorted({a.status_code for a in answers})
    assert set(statuses) <= {200, 409}, statuses
    ok = [a.json() for a in answers if a.status_code == 200]
    assert ok and all(a == ok[0] for a in ok)  # one append, replayed to the others
    for refused in (a for a in answers if a.status_code == 409):
        assert refused.json()["code"] == "idempotency_in_progress"
        assert refused.headers["retry-after"] == "1"
    logs = await client.get(f"/v1/runs/{run['id']}/events", params={"type": "log"})
    assert len(logs.json()["data"]) == 5
    retry = await client.post(f"/v1/runner/runs/{run['id']}/events", json=batch, headers=headers)
    assert retry.json() == ok[0]


async def test_answers_outlive_a_restart(settings: Settings) -> None:
    body = {"pipeline": "deploy"}
    key = {"Idempotency-Key": "before-restart"}
    first_app = create_app(settings)
    async with LifespanManager(first_app):
        transport = httpx.ASGITransport(app=first_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
            await make_pipeline(client)
            first = (await client.post("/v1/runs", json=body, headers=key)).json()
    second_app = create_app(settings)
    async with LifespanManager(second_app):
        transport = httpx.ASGITransport(app=second_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
            again = await client.post("/v1/runs", json=body, headers=key)
            assert again.headers["idempotent-replayed"] == "true"
            assert again.json() == first
            assert await count_runs(client) == 1


async def test_a_replay_needs_the_same_valid_credentials(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await make_pipeline(client)
    key = {"Idempotency-Key": "open-mode-create"}
    first = await client.post("/v1/runs", json={"pipeline": "deploy"}, headers=key)
    assert first.status_code == 201
    made = await client.post("/v1/api-keys", json={"name": "a", "role": "admin"}, headers=key)
    assert made.status_code == 201  # answers with secrets are never stored, nor replayed
    async with app.state.services.db.read() as conn:
        stored = (await conn.execute(sa.select(idempotency_keys.c.body))).all()
    assert all(b"ryk_" not in bytes(row.body or b"") for row in stored)
    # open mode is over: the stored open-mode answer is not handed to an anonymous retry
    again = await client.post("/v1/runs", json={"pipeline": "deploy"}, headers=key)
    assert_problem(again, 401, "unauthorized")
    secret = made.json()["secret"]
    as_key = {**key, "Authorization": f"Bearer {secret}"}
    fresh = await client.post("/v1/runs", json={"pipeline": "deploy"}, headers=as_key)
    assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]


async def test_create_and_stream_is_not_cut_short_by_a_key(live: httpx.AsyncClient) -> None:
    await make_pipeline(live)
    body = {"pipeline": "deploy", "stream": True, "id": "run_streamed00000000000000001"}
    headers = {"Idempotency-Key": "stream-1"}
    async with live.stream("POST", "/v1/runs", json=body, headers=headers) as response:
        assert response.status_code == 200
        frames = SSEReader(response).frames()
        assert (await anext(frames)).event == "run.created"
        for status in ("running", "completed"):
            await live.post(f"/v1/runner/runs/{body['id']}/status", json={"status": status})
        async with asyncio.timeout(10):
            events = [frame.event async for frame in frames]
    assert events[-2:] == ["run.completed", "stream.end"]
