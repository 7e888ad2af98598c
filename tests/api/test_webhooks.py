"""Webhooks (DESIGN §11, §15): admins subscribe URLs to events; every matching event of a
run is delivered through an outbox written in the event's transaction, signed per Standard
Webhooks, retried with backoff until delivered or dead, and can be redelivered.

Deliveries go to a real HTTP receiver on loopback, and every request it gets is verified
with the ``standardwebhooks`` library."""

import asyncio
import contextlib
import re
from typing import Any

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from standardwebhooks.webhooks import Webhook

from runyard.app import create_app
from runyard.container import Services
from runyard.events.service import NewEvent
from runyard.settings import Settings
from tests.api.test_isolation import add_workspace
from tests.conftest import free_port
from tests.support import assert_problem, make_pipeline, make_run, post_events
from tests.webhook_support import (
    Received,
    Receiver,
    all_status,
    auth,
    deliveries,
    key,
    metric,
    subscribe,
    wait_for_deliveries,
)

FAST = {"webhook_allow_private": True, "webhook_retry_base_seconds": 0.05}
pytestmark = [pytest.mark.anyio, pytest.mark.settings(**FAST)]


async def test_admins_create_list_read_change_and_delete_webhooks(
    client: httpx.AsyncClient,
) -> None:
    created = await subscribe(client, "https://hooks.example/a", ["run.completed", "deploy.*"])
    assert created["id"].startswith("wh_") and created["object"] == "webhook"
    assert created["secret"].startswith("whsec_")
    Webhook(created["secret"])  # a Standard Webhooks secret
    assert created["events"] == ["run.completed", "deploy.*"]
    assert created["enabled"] is True and created["workspace_id"] == "ws_default"
    second = await subscribe(client, "https://hooks.example/b", ["*"], secret=created["secret"])
    assert second["secret"] == created["secret"]  # a given secret is kept

    listed = (await client.get("/v1/webhooks")).json()
    assert [w["id"] for w in listed["data"]] == [second["id"], created["id"]]  # newest first
    assert listed["has_more"] is False and listed["next_cursor"] is None
    assert all("secret" not in w for w in listed["data"])
    first_page = (await client.get("/v1/webhooks", params={"limit": 1})).json()
    assert first_page["has_more"] is True and [w["id"] for w in first_page["data"]] == [
        second["id"]
    ]
    rest = (
        await client.get("/v1/webhooks", params={"limit": 1, "cursor": first_page["next_cursor"]})
    ).json()
    assert [w["id"] for w in rest["data"]] == [created["id"]] and rest["has_more"] is False

    read = (await client.get(f"/v1/webhooks/{created['id']}")).json()
    assert read == {k: v for k, v in created.items() if k != "secret"}

    changed = await client.patch(
        f"/v1/webhooks/{created['id']}",
        json={"url": "https://hooks.example/c", "events": ["run.*", "run.*"], "enabled": False},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["url"] == "https://hooks.example/c"
    assert changed.json()["events"] == ["run.*"] and changed.json()["enabled"] is False
    assert "secret" not in changed.json()
    rotated = await client.patch(
        f"/v1/webhooks/{created['id']}", json={"secret": "whsec_" + "A" * 32}
    )
    assert rotated.status_code == 200, rotated.text

    assert (await client.delete(f"/v1/webhooks/{created['id']}")).status_code == 204
    assert_problem(await client.get(f"/v1/webhooks/{created['id']}"), 404, "webhook_not_found")
    assert_problem(await client.delete(f"/v1/webhooks/{created['id']}"), 404, "webhook_not_found")
    assert_problem(
        await client.get(f"/v1/webhooks/{created['id']}/deliveries"), 404, "webhook_not_found"
    )

    audit = (await client.get("/v1/audit", params={"target_id": created["id"]})).json()["data"]
    assert [e["action"] for e in audit] == [
        "webhook.delete",
        "webhook.update",
        "webhook.update",
        "webhook.create",
    ]
    assert audit[1]["details"] == {"secret_rotated": True}
    assert created["secret"] not in orjson.dumps(audit).decode()


async def test_a_webhooks_secret_is_never_replayed_for_an_idempotency_key(
    client: httpx.AsyncClient,
) -> None:
    body = {"url": "https://hooks.example/a", "events": ["*"]}
    headers = {"Idempotency-Key": "same"}
    first = await client.post("/v1/webhooks", json=body, headers=headers)
    second = await client.post("/v1/webhooks", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert "idempotent-replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]


async def test_only_admin_keys_manage_webhooks(client: httpx.AsyncClient) -> None:
    admin = await key(client, "admin")
    hook = await subscribe(client, "https://hooks.example/a", ["*"], headers=auth(admin))
    for role in ("member", "viewer", "runner"):
        as_role = auth(await key(client, role, auth(admin)))
        for method, path, body in (
            ("POST", "/v1/webhooks", {"url": "https://hooks.example/b", "events": ["*"]}),
            ("GET", "/v1/webhooks", None),
            ("GET", f"/v1/webhooks/{hook['id']}", None),
            ("PATCH", f"/v1/webhooks/{hook['id']}", {"enabled": False}),
            ("DELETE", f"/v1/webhooks/{hook['id']}", None),
            ("GET", f"/v1/webhooks/{hook['id']}/deliveries", None),
        ):
            response = await client.request(method, path, json=body, headers=as_role)
            assert_problem(response, 403, "forbidden")
    assert_problem(await client.get("/v1/webhooks"), 401, "unauthorized")
    assert (await client.get(f"/v1/webhooks/{hook['id']}", headers=auth(admin))).json()[
        "enabled"
    ] is True


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"url": "ftp://hooks.example/a", "events": ["*"]}, ["body", "url"]),
        ({"url": "not a url", "events": ["*"]}, ["body", "url"]),
        ({"url": "https://hooks.example/a", "events": []}, ["body", "events"]),
        ({"url": "https://hooks.example/a", "events": ["Deploy.*"]}, ["body", "events"]),
        ({"url": "https://hooks.example/a", "events": ["deploy.**"]}, ["body", "events"]),
        ({"url": "https://hooks.example/a", "events": ["deploy*"]}, ["body", "events"]),
        ({"url": "https://hooks.example/a", "events": ["*", ""]}, ["body", "events"]),
        (
            {"url": "https://hooks.example/a", "events": ["*"], "secret": "s3cret"},
            ["body", "secret"],
        ),
        (
            {"url": "https://hooks.example/a", "events": ["*"], "secret": "whsec_AAAA"},
            ["body", "secret"],
        ),
        ({"url": "https://hooks.example/a", "events": ["*"], "extra": 1}, ["body", "extra"]),
    ],
)
async def test_invalid_subscriptions_are_400(
    client: httpx.AsyncClient, body: dict[str, Any], loc: list[str]
) -> None:
    problem = assert_problem(await client.post("/v1/webhooks", json=body), 400, "invalid_input")
    assert loc in [e["loc"][:2] for e in problem["errors"]], problem


@pytest.mark.settings(webhook_allow_private=False)
async def test_private_and_loopback_targets_are_refused(client: httpx.AsyncClient) -> None:
    for url in (
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://100.64.0.1/hook",
    ):
        problem = assert_problem(
            await client.post("/v1/webhooks", json={"url": url, "events": ["*"]}),
            400,
            "invalid_input",
        )
        assert problem["errors"][0]["loc"] == ["body", "url"], url
        assert "RUNYARD_WEBHOOK_ALLOW_PRIVATE" in problem["detail"]
    public = await subscribe(client, "https://93.184.216.34/hook", ["*"])  # no DNS involved
    moved = await client.patch(
        f"/v1/webhooks/{public['id']}", json={"url": "http://127.0.0.1/hook"}
    )
    assert_problem(moved, 400, "invalid_input")
    unresolvable = await client.post(
        "/v1/webhooks", json={"url": "https://nowhere.invalid/hook", "events": ["*"]}
    )
    assert_problem(unresolvable, 400, "invalid_input")


async def test_a_target_refused_at_delivery_time_fails_the_attempt(
    settings: Settings, receiver: Receiver
) -> None:
    """The address is checked again before every attempt: a subscription made while private
    targets were allowed is refused once they are not (so is a name that now resolves
    to a private address)."""
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://runyard.test") as c:
            hook = await subscribe(c, receiver.url, ["run.created"])
            await make_pipeline(c)
    strict = create_app(
        settings.model_copy(update={"webhook_allow_private": False, "webhook_max_attempts": 1})
    )
    async with LifespanManager(strict):
        transport = httpx.ASGITransport(app=strict)
        async with httpx.AsyncClient(transport=transport, base_url="http://runyard.test") as c:
            await make_run(c, start=False)
            [dead] = await wait_for_deliveries(c, hook["id"], all_status("dead", 1))
    assert dead["attempts"] == 1 and dead["last_status_code"] is None
    assert dead["last_error"].startswith("refused: 127.0.0.1 ")
    assert "not a public address" in dead["last_error"]
    assert receiver.requests == []


# -- deliveries -----------------------------------------------------------------------------


async def test_matching_events_are_delivered_signed_with_the_event_and_the_run(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await make_pipeline(client)
    await make_run(client)  # before any subscription: the workspace has none (and caches that)
    some = await subscribe(client, receiver.url, ["run.created", "deploy.*"])
    by_name = receiver.url.replace("127.0.0.1", "localhost")  # sent to the address it resolves to
    every = await subscribe(client, by_name, ["*"])
    run = await make_run(client, tags=["webhooks"])
    await post_events(
        client,
        run["id"],
        [{"type": "deploy.started", "data": {"target": "prod"}}, {"type": "log", "data": {}}],
    )
    # some: run.created, deploy.started; every: run.created, run.queued, deploy.started, log
    requests = await receiver.wait_for(6)
    await asyncio.sleep(0.2)
    assert len(requests) == 6  # nothing else: the first run's events predate the webhooks

    by_hook: dict[str, list[tuple[Received, dict[str, Any]]]] = {some["id"]: [], every["id"]: []}
    for request in requests:
        for hook in (some, every):
            with contextlib.suppress(Exception):
                by_hook[hook["id"]].append((request, request.verify(hook["secret"])))
    assert len(by_hook[some["id"]]) == 2 and len(by_hook[every["id"]]) == 4  # each verifies once
    assert sorted(b["event"] for _, b in by_hook[some["id"]]) == ["deploy.started", "run.created"]
    assert sorted(b["event"] for _, b in by_hook[every["id"]]) == [
        "deploy.started",
        "log",
        "run.created",
        "run.queued",
    ]
    port = receiver.url.split(":")[2].split("/")[0]
    assert {r.headers["host"] for r, _ in by_hook[every["id"]]} == {f"localhost:{port}"}
    for request, body in by_hook[some["id"]] + by_hook[every["id"]]:
        assert request.headers["x-runyard-event"] == body["event"]
        assert request.headers["content-type"] == "application/json"
        assert re.fullmatch(r"v1,[A-Za-z0-9+/]+=*", request.headers["webhook-signature"])
        assert body.keys() == {"event", "payload", "ts"} and body["ts"].endswith("Z")
        payload = body["payload"]
        assert payload.keys() == {"run_id", "workspace_id", "event", "run"}
        assert payload["run_id"] == run["id"] and payload["workspace_id"] == "ws_default"
        assert payload["event"]["type"] == body["event"]
        assert payload["event"]["run_id"] == run["id"] and payload["event"]["sequence"] >= 1
        assert payload["run"]["id"] == run["id"] and payload["run"]["tags"] == ["webhooks"]
        assert "steps" not in payload["run"] and payload["run"]["object"] == "run"
    deploy = next(b for _, b in by_hook[some["id"]] if b["event"] == "deploy.started")
    assert deploy["payload"]["event"]["data"] == {"target": "prod"}

    log = await wait_for_deliveries(client, some["id"], all_status("delivered", 2))
    assert [d["event"] for d in log] == ["deploy.started", "run.created"]  # newest first
    for delivery in log:
        assert delivery["attempts"] == 1 and delivery["last_status_code"] == 204
        assert delivery["last_error"] is None and delivery["next_attempt_at"] is None
        assert isinstance(delivery["last_latency_ms"], int) and delivery["delivered_at"]
        assert delivery["webhook_message_id"] == delivery["id"]
        assert delivery["run_id"] == run["id"] and delivery["redelivery_of"] is None
    sent_ids = {r.headers["webhook-id"] for r, _ in by_hook[some["id"]]}
    assert sent_ids == {d["webhook_message_id"] for d in log}
    one = await client.get(f"/v1/webhooks/{some['id']}/deliveries/{log[0]['id']}")
    assert one.json() == log[0]
    page = (await client.get(f"/v1/webhooks/{every['id']}/deliveries", params={"limit": 3})).json()
    assert len(page["data"]) == 3 and page["has_more"] is True
    rest = (
        await client.get(
            f"/v1/webhooks/{every['id']}/deliveries",
            params={"limit": 3, "cursor": page["next_cursor"]},
        )
    ).json()
    assert len(rest["data"]) == 1 and rest["has_more"] is False
    delivered = await client.get(
        f"/v1/webhooks/{every['id']}/deliveries", params={"status": "delivered"}
    )
    assert len(delivered.json()["data"]) == 4
    assert metric((await client.get("/metrics")).text, "delivered") == 6


async def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.script = [500, 503]
    hook = await subscribe(client, receiver.url, ["run.created"])
    await make_pipeline(client)
    run = await make_run(client)
    [delivery] = await wait_for_deliveries(client, hook["id"], all_status("delivered", 1))
    assert delivery["attempts"] == 3 and delivery["last_status_code"] == 204
    assert delivery["last_error"] is None and delivery["run_id"] == run["id"]
    assert len(receiver.requests) == 3
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery["id"]}
    for request in receiver.requests:
        request.verify(hook["secret"])
    metrics = (await client.get("/metrics")).text
    assert metric(metrics, "retrying") == 2 and metric(metrics, "delivered") == 1


@pytest.mark.settings(**FAST, webhook_max_attempts=3)
async def test_a_delivery_is_dead_after_its_attempts_and_a_redelivery_keeps_its_webhook_id(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.status = 500
    hook = await subscribe(client, receiver.url, ["run.created"])
    await make_pipeline(client)
    await make_run(client)
    [dead] = await wait_for_deliveries(client, hook["id"], all_status("dead", 1))
    assert dead["attempts"] == 3 and dead["last_status_code"] == 500
    assert dead["last_error"] == "HTTP 500" and dead["next_attempt_at"] is None
    assert len(receiver.requests) == 3
    metrics = (await client.get("/metrics")).text
    assert metric(metrics, "retrying") == 2 and metric(metrics, "dead") == 1

    receiver.status = 200
    response = await client.post(f"/v1/webhooks/{hook['id']}/deliveries/{dead['id']}/redeliver")
    assert response.status_code == 201, response.text
    again = response.json()
    assert again["id"] != dead["id"] and again["redelivery_of"] == dead["id"]
    assert again["webhook_message_id"] == dead["webhook_message_id"] == dead["id"]
    assert again["status"] == "pending" and again["attempts"] == 0
    log = await wait_for_deliveries(
        client, hook["id"], lambda found: found[0]["status"] == "delivered"
    )
    assert [(d["id"], d["status"]) for d in log] == [
        (again["id"], "delivered"),
        (dead["id"], "dead"),
    ]
    resent = receiver.requests[-1]
    assert resent.headers["webhook-id"] == dead["id"]
    assert resent.body == receiver.requests[0].body  # the same message
    resent.verify(hook["secret"])
    audit = (await client.get("/v1/audit", params={"action": "webhook.redeliver"})).json()["data"]
    assert audit[0]["details"] == {"delivery_id": dead["id"], "redelivery_id": again["id"]}
    missing = await client.post(f"/v1/webhooks/{hook['id']}/deliveries/whd_nope/redeliver")
    assert_problem(missing, 404, "webhook_delivery_not_found")


@pytest.mark.settings(**FAST, webhook_max_attempts=1, webhook_timeout_seconds=0.3)
async def test_timeouts_and_connection_errors_fail_attempts(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.delay = 2.0
    slow = await subscribe(client, receiver.url, ["run.created"])
    closed = await subscribe(client, f"http://127.0.0.1:{free_port()}/hook", ["run.created"])
    await make_pipeline(client)
    await make_run(client)
    [timed_out] = await wait_for_deliveries(client, slow["id"], all_status("dead", 1))
    assert timed_out["last_error"] == "no answer within 0.3 s"
    assert timed_out["last_status_code"] is None and timed_out["last_latency_ms"] >= 300
    [refused] = await wait_for_deliveries(client, closed["id"], all_status("dead", 1))
    assert refused["last_error"].startswith("ConnectError")


async def test_redirects_are_not_followed(client: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.script = [307]
    hook = await subscribe(client, receiver.url, ["run.created"])
    await make_pipeline(client)
    await make_run(client)
    [delivery] = await wait_for_deliveries(client, hook["id"], all_status("delivered", 1))
    assert delivery["attempts"] == 2 and len(receiver.requests) == 2


async def test_an_event_of_a_rolled_back_transaction_leaves_no_delivery(
    app: FastAPI, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    services: Services = app.state.services
    hook = await subscribe(client, receiver.url, ["deploy.*"])
    await make_pipeline(client)
    run = await make_run(client)

    async def doomed() -> None:
        async with services.db.write() as tx:
            await services.events.append(
                tx,
                run["id"],
                [NewEvent("deploy.started", {"doomed": True})],
                run_id=run["id"],
                source="runner",
                attempt=0,
            )
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await doomed()
    await post_events(client, run["id"], [{"type": "deploy.finished", "data": {}}])
    [only] = await wait_for_deliveries(client, hook["id"], all_status("delivered", 1))
    assert only["event"] == "deploy.finished"
    await asyncio.sleep(0.2)
    assert [r.verify(hook["secret"])["event"] for r in receiver.requests] == ["deploy.finished"]


async def test_a_disabled_webhook_gets_no_deliveries_until_enabled(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    hook = await subscribe(client, receiver.url, ["run.created"])
    await make_pipeline(client)
    off = await client.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False})
    assert off.json()["enabled"] is False
    await make_run(client)
    await asyncio.sleep(0.2)
    assert await deliveries(client, hook["id"]) == [] and receiver.requests == []
    await client.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": True})
    run = await make_run(client)
    [delivery] = await wait_for_deliveries(client, hook["id"], all_status("delivered", 1))
    assert delivery["run_id"] == run["id"]


async def test_workspaces_see_and_get_only_their_own_webhooks(
    app: FastAPI, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await add_workspace(app, "ws_b")
    as_b = {"X-Workspace-Id": "ws_b"}
    hook = await subscribe(client, receiver.url, ["*"])
    await make_pipeline(client, headers=as_b)
    await make_run(client, headers=as_b)  # B's run: nothing for A's webhook
    await make_pipeline(client)
    await make_run(client)
    await receiver.wait_for(2)
    await asyncio.sleep(0.2)
    assert {r.verify(hook["secret"])["payload"]["workspace_id"] for r in receiver.requests} == {
        "ws_default"
    }
    assert len(receiver.requests) == 2
    assert (await client.get("/v1/webhooks", headers=as_b)).json()["data"] == []
    delivery = (await deliveries(client, hook["id"]))[0]
    for method, path in (
        ("GET", f"/v1/webhooks/{hook['id']}"),
        ("PATCH", f"/v1/webhooks/{hook['id']}"),
        ("DELETE", f"/v1/webhooks/{hook['id']}"),
        ("GET", f"/v1/webhooks/{hook['id']}/deliveries"),
        ("GET", f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}"),
        ("POST", f"/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver"),
    ):
        body = {"enabled": False} if method == "PATCH" else None
        response = await client.request(method, path, json=body, headers=as_b)
        assert response.status_code == 404, (method, path, response.text)
    assert (await client.get(f"/v1/webhooks/{hook['id']}")).json()["enabled"] is True
