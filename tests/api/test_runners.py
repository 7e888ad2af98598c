"""The runner protocol (DESIGN §8) on both databases: claims, leases, fencing, tokens."""

import asyncio
import contextlib
import time
from typing import Any

import httpx
import pytest

from tests.support import assert_problem, make_pipeline, make_run, wait_for_status

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def claim(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/runner/claim", json={"runner": {"name": "r1"}, **body})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def types_of(client: httpx.AsyncClient, run_id: str) -> list[str]:
    page = (await client.get(f"/v1/runs/{run_id}/events?limit=1000")).json()
    return [e["type"] for e in page["data"]]


async def test_a_claim_leases_the_oldest_queued_run_with_a_token(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    assert (await claim(client)).status_code == 204
    first = await make_run(client)
    await make_run(client)
    response = await claim(client, pipelines=["deploy"])
    assert response.status_code == 200
    body = response.json()
    assert body["run"]["id"] == first["id"]
    assert body["run"]["status"] == "running" and body["run"]["attempt"] == 1
    assert body["lease"]["id"].startswith("lse_") and body["lease"]["attempt"] == 1
    assert body["run"]["runner_id"].startswith("rnr_")
    assert body["token"].count(".") == 2
    started = (await client.get(f"/v1/runs/{first['id']}/events?type=run.started")).json()["data"]
    assert started[0]["data"]["lease_id"] == body["lease"]["id"]
    assert (await claim(client, pipelines=["other"])).status_code == 204


async def test_a_waiting_claim_wakes_when_a_run_is_queued(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    waiting = asyncio.create_task(claim(client, wait_seconds=10))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    queued_at = time.monotonic()
    run = await make_run(client)
    response = await asyncio.wait_for(waiting, 5)
    assert response.status_code == 200
    assert response.json()["run"]["id"] == run["id"]
    assert time.monotonic() - queued_at < 2
    started = time.monotonic()
    assert (await claim(client, wait_seconds=0.3)).status_code == 204
    assert 0.25 < time.monotonic() - started < 3


async def test_concurrent_claimers_never_share_a_run(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    runs = {(await make_run(client))["id"] for _ in range(3)}
    responses = await asyncio.gather(*(claim(client) for _ in range(6)))
    claimed = [r.json()["run"]["id"] for r in responses if r.status_code == 200]
    assert sorted(claimed) == sorted(runs)
    assert sum(r.status_code == 204 for r in responses) == 3


async def test_heartbeats_extend_the_lease_and_carry_cancel_requests(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(client)
    run = await make_run(client)
    body = (await claim(client)).json()
    auth = bearer(body["token"])
    url = f"/v1/runner/runs/{run['id']}"
    beat = await client.post(f"{url}/heartbeat", headers=auth)
    assert beat.status_code == 200
    assert beat.json()["cancel_requested"] is False
    assert beat.json()["lease_expires_at"] >= body["lease"]["expires_at"]
    assert (await client.post(f"/v1/runs/{run['id']}/cancel")).json()["result"] == "cancelling"
    assert (await client.post(f"{url}/heartbeat", headers=auth)).json()["cancel_requested"] is True
    acked = await client.post(f"{url}/status", json={"status": "cancelled"}, headers=auth)
    assert acked.json()["run"]["status"] == "cancelled"
    assert_problem(await client.post(f"{url}/heartbeat", headers=auth), 409, "stale_lease")


async def test_tokens_are_scoped_to_their_run(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    run_a = await make_run(client)
    run_b = await make_run(client)
    token = (await claim(client)).json()["token"]
    other = await client.post(
        f"/v1/runner/runs/{run_b['id']}/events", json={"type": "log"}, headers=bearer(token)
    )
    assert_problem(other, 403, "forbidden")
    forged = bearer(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
    assert_problem(
        await client.post(f"/v1/runner/runs/{run_a['id']}/heartbeat", headers=forged),
        401,
        "unauthorized",
    )
    assert_problem(
        await client.post(
            f"/v1/runner/runs/{run_a['id']}/heartbeat", headers={"X-Runyard-Lease": "nope"}
        ),
        400,
        "invalid_input",
    )
    refreshed = await client.post(f"/v1/runner/runs/{run_a['id']}/token", headers=bearer(token))
    assert refreshed.status_code == 200 and refreshed.json()["token"].count(".") == 2
    beat = await client.post(
        f"/v1/runner/runs/{run_a['id']}/heartbeat", headers=bearer(refreshed.json()["token"])
    )
    assert beat.status_code == 200


@pytest.mark.settings(lease_seconds=1)
async def test_a_lost_lease_requeues_the_run_and_fences_the_old_runner(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(client)
    run = await make_run(client, max_attempts=2)
    first = (await claim(client)).json()
    await wait_for_status(client, run["id"], "queued")  # no heartbeats: the sweeper re-queues
    second = (await claim(client, runner={"name": "r2"})).json()
    assert second["run"]["attempt"] == 2 and second["lease"]["id"] != first["lease"]["id"]
    url = f"/v1/runner/runs/{run['id']}"
    stale = bearer(first["token"])
    assert_problem(
        await client.post(f"{url}/status", json={"status": "completed"}, headers=stale),
        409,
        "stale_lease",
    )
    assert_problem(
        await client.post(f"{url}/events", json={"type": "log"}, headers=stale), 409, "stale_lease"
    )
    fresh = bearer(second["token"])
    assert (
        await client.post(f"{url}/events", json={"type": "log"}, headers=fresh)
    ).status_code == 200
    done = await client.post(f"{url}/status", json={"status": "completed"}, headers=fresh)
    assert done.json()["run"]["status"] == "completed"
    types = await types_of(client, run["id"])
    assert types.count("run.retrying") == 1 and types.count("run.completed") == 1
    assert types[-1] == "run.completed"


@pytest.mark.settings(lease_seconds=1)
async def test_callbacks_keep_the_lease_alive_like_heartbeats(client: httpx.AsyncClient) -> None:
    """DESIGN §15: a remote that reports but never heartbeats keeps its lease."""
    await make_pipeline(client)
    run = await make_run(client)
    claimed = (await claim(client)).json()
    url, auth = f"/v1/runner/runs/{run['id']}", bearer(claimed["token"])
    for i in range(8):  # 2.4 s of callbacks: more than two leases' worth, no heartbeat
        await asyncio.sleep(0.3)
        if i % 3 == 0:
            reply = await client.post(f"{url}/status", json={"progress": i / 10}, headers=auth)
        elif i % 3 == 1:
            reply = await client.post(f"{url}/steps/work", json={"status": "running"}, headers=auth)
        else:
            reply = await client.post(f"{url}/events", json={"type": "log"}, headers=auth)
        assert reply.status_code == 200, reply.text
    alive = (await client.get(f"/v1/runs/{run['id']}")).json()
    assert (alive["status"], alive["attempt"]) == ("running", 1)
    failed = await wait_for_status(client, run["id"], "failed")  # silence: the lease expires
    assert failed["error"]["code"] == "lease_expired"


@pytest.mark.settings(lease_seconds=1)
async def test_a_lost_lease_on_the_last_attempt_fails_the_run(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    run = await make_run(client)
    await claim(client)
    failed = await wait_for_status(client, run["id"], "failed")
    assert failed["error"]["code"] == "lease_expired"
    assert failed["attempt"] == 1


@pytest.mark.settings(cancel_deadline_seconds=1)
async def test_a_cancel_the_runner_never_acknowledges_ends_at_the_deadline(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(client)
    run = await make_run(client)
    token = (await claim(client)).json()["token"]
    assert (await client.post(f"/v1/runs/{run['id']}/cancel")).json()["result"] == "cancelling"
    cancelled = await wait_for_status(client, run["id"], "cancelled")
    assert cancelled["completed_at"] is not None
    late = await client.post(
        f"/v1/runner/runs/{run['id']}/status", json={"status": "completed"}, headers=bearer(token)
    )
    assert_problem(late, 409, "stale_lease")


async def test_a_forced_cancel_revokes_the_lease(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    run = await make_run(client)
    token = (await claim(client)).json()["token"]
    forced = await client.post(f"/v1/runs/{run['id']}/cancel", json={"force": True})
    assert forced.json()["result"] == "cancelled"
    late = await client.post(
        f"/v1/runner/runs/{run['id']}/events", json={"type": "log"}, headers=bearer(token)
    )
    assert_problem(late, 409, "stale_lease")


async def test_runners_are_listed_with_their_current_runs(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    await make_run(client)
    await claim(client, runner={"name": "builder-1", "labels": ["gpu"], "version": "1.2"})
    await claim(client, runner={"name": "idle-1"})
    runners = {r["name"]: r for r in (await client.get("/v1/runners")).json()["data"]}
    assert set(runners) == {"builder-1", "idle-1"}
    assert runners["builder-1"]["current_runs"] == 1 and runners["idle-1"]["current_runs"] == 0
    assert runners["builder-1"]["labels"] == ["gpu"] and runners["builder-1"]["version"] == "1.2"
    assert {r["status"] for r in runners.values()} == {"online"}
    other = await client.get("/v1/runners", headers={"X-Workspace-Id": "ws_default"})
    assert len(other.json()["data"]) == 2


async def test_runners_record_steps_on_the_run(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    run = await make_run(client)
    auth = bearer((await claim(client)).json()["token"])
    url = f"/v1/runner/runs/{run['id']}/steps"
    started = await client.post(f"{url}/architect", json={"status": "running"}, headers=auth)
    assert started.json()["run"]["current_step"] == "architect"
    done = await client.post(
        f"{url}/architect", json={"status": "completed", "output": {"plan": "ok"}}, headers=auth
    )
    step = done.json()["run"]["steps"][0]
    assert step["name"] == "architect" and step["status"] == "completed"
    assert step["output"] == {"plan": "ok"} and step["attempt"] == 1
    assert_problem(
        await client.post(f"{url}/x", json={"status": "paused"}, headers=auth), 400, "invalid_input"
    )
    types = await types_of(client, run["id"])
    assert types[-2:] == ["step.started", "step.completed"]


async def test_a_claimer_that_hung_up_takes_no_run(live: httpx.AsyncClient) -> None:
    """A runner that stops while its claim waits (a restart, a deploy) must not be leased the
    next run: that run would sit out a lease and lose an attempt."""
    await make_pipeline(live)
    waiting = asyncio.create_task(live.post("/v1/runner/claim", json={"wait_seconds": 10}))
    await asyncio.sleep(0.3)  # the claim is waiting on the server
    waiting.cancel()  # httpx closes the connection
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(0.1)
    run = await make_run(live)
    await asyncio.sleep(0.5)  # the hung-up claimer was woken by the new run
    after = (await live.get(f"/v1/runs/{run['id']}")).json()
    assert (after["status"], after["attempt"]) == ("queued", 0)
    taken = (await live.post("/v1/runner/claim", json={})).json()
    assert taken["run"]["id"] == run["id"] and taken["lease"]["attempt"] == 1


async def test_a_released_run_is_queued_again_without_spending_an_attempt(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(client)
    run = await make_run(client)  # max_attempts 1: a lost lease would fail it
    first = (await claim(client)).json()
    url = f"/v1/runner/runs/{run['id']}"
    assert_problem(await client.post(f"{url}/release"), 400, "invalid_input")  # no lease named
    released = await client.post(f"{url}/release", headers=bearer(first["token"]))
    assert released.status_code == 200, released.text
    assert (released.json()["run"]["status"], released.json()["run"]["attempt"]) == ("queued", 1)
    stale = bearer(first["token"])
    assert_problem(await client.post(f"{url}/release", headers=stale), 409, "stale_lease")
    assert_problem(
        await client.post(f"{url}/events", json={"type": "log"}, headers=stale), 409, "stale_lease"
    )
    second = (await claim(client)).json()
    assert second["run"]["id"] == run["id"] and second["lease"]["attempt"] == 2
    page = await client.get(f"/v1/runs/{run['id']}/events", params={"type": "run.retrying"})
    assert [e["data"]["reason"] for e in page.json()["data"]] == ["released"]
    leases = (await client.get(f"/v1/runs/{run['id']}/diagnostics")).json()["attempts"]
    assert [(lease["attempt"], lease["end_reason"]) for lease in leases] == [
        (1, "released"),
        (2, None),
    ]

    await client.post(f"/v1/runs/{run['id']}/cancel")  # cancelling: a release ends it
    done = await client.post(f"{url}/release", headers=bearer(second["token"]))
    assert done.json()["run"]["status"] == "cancelled"


@pytest.mark.settings(lease_seconds=1)
async def test_a_released_attempt_does_not_count_against_max_attempts(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(client)
    run = await make_run(client, max_attempts=2)
    first = (await claim(client)).json()
    url = f"/v1/runner/runs/{run['id']}/release"
    assert (await client.post(url, headers=bearer(first["token"]))).status_code == 200
    second = (await claim(client)).json()  # attempt 2, the first that counts
    assert second["lease"]["attempt"] == 2
    requeued = await wait_for_status(client, run["id"], "queued")  # its lease expired
    assert requeued["attempt"] == 2
    third = (await claim(client)).json()
    assert third["lease"]["attempt"] == 3
    failed = await wait_for_status(client, run["id"], "failed")  # two counted attempts: done
    assert failed["error"]["code"] == "lease_expired"
