"""Dashboard sessions (DESIGN §4, §15): an API key logs a browser in; the cookie acts as the key,
mutations need the CSRF token, and logout or the key's end ends the session."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support import SSEReader, assert_problem, make_pipeline, make_run

pytestmark = pytest.mark.anyio
COOKIE = "runyard_session"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def make_key(
    client: httpx.AsyncClient, role: str, headers: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/api-keys", json={"name": f"{role} key", "role": role, **fields}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


@contextlib.asynccontextmanager
async def browser(
    app: FastAPI, base_url: str = "http://runyard.test"
) -> AsyncIterator[httpx.AsyncClient]:
    """A client with its own cookie jar, like a browser tab."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as c:
        yield c


async def login(tab: httpx.AsyncClient, secret: str) -> dict[str, Any]:
    response = await tab.post("/v1/auth/login", json={"api_key": secret})
    assert response.status_code == 200, response.text
    return dict(response.json())


def cookie_attributes(response: httpx.Response) -> dict[str, str]:
    """The ``Set-Cookie`` attributes of the session cookie, names lower-cased."""
    (header,) = [h for h in response.headers.get_list("set-cookie") if h.startswith(COOKIE)]
    attributes = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        attributes[name.lower() if name != COOKIE else name] = value
    return attributes


async def test_login_sets_an_http_only_lax_cookie_and_answers_the_session(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_key(client, "admin")
    member = await make_key(client, "member", bearer(admin["secret"]))
    async with browser(app) as tab:
        response = await tab.post("/v1/auth/login", json={"api_key": member["secret"]})
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        session = response.json()
        assert session["object"] == "session" and session["id"].startswith("dss_")
        assert (session["workspace_id"], session["role"], session["key_id"]) == (
            "ws_default",
            "member",
            member["id"],
        )
        assert len(session["csrf_token"]) >= 32
        expires = datetime.fromisoformat(session["expires_at"].replace("Z", "+00:00"))
        assert timedelta(hours=11.9) < expires - datetime.now(UTC) <= timedelta(hours=12)

        cookie = cookie_attributes(response)
        assert cookie[COOKIE].startswith("rys_") and member["secret"] not in cookie[COOKIE]
        assert "httponly" in cookie and cookie["samesite"].lower() == "lax"
        assert cookie["path"] == "/" and "secure" not in cookie  # plain http
        assert 43_190 <= int(cookie["max-age"]) <= 43_200

        current = await tab.get("/v1/auth/session")
        assert current.status_code == 200 and current.json() == session
        runs = await tab.get("/v1/runs")  # the cookie alone reads
        assert runs.status_code == 200, runs.text

    assert_problem(await client.get("/v1/auth/session"), 401, "unauthorized")  # no cookie
    # a bearer key with an empty body logs in too
    async with browser(app, "https://runyard.test") as tab:
        response = await tab.post("/v1/auth/login", headers=bearer(member["secret"]))
        assert response.status_code == 200, response.text
        assert "secure" in cookie_attributes(response)  # over https
    audit = await client.get(
        "/v1/audit", params={"action": "session.login"}, headers=bearer(admin["secret"])
    )
    entries = audit.json()["data"]
    assert len(entries) == 2 and {e["actor"] for e in entries} == {member["id"]}
    assert entries[0]["target_type"] == "session"


@pytest.mark.settings(session_cookie_secure=True, session_hours=1.0)
async def test_the_cookie_is_secure_when_configured_and_never_outlives_its_key(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_key(client, "admin")
    soon = datetime.now(UTC) + timedelta(minutes=10)
    brief = await make_key(client, "viewer", bearer(admin["secret"]), expires_at=soon.isoformat())
    async with browser(app) as tab:
        response = await tab.post("/v1/auth/login", json={"api_key": admin["secret"]})
        assert "secure" in cookie_attributes(response)
        assert 3590 <= int(cookie_attributes(response)["max-age"]) <= 3600
        response = await tab.post("/v1/auth/login", json={"api_key": brief["secret"]})
        assert response.json()["expires_at"] == brief["expires_at"]
        assert 590 <= int(cookie_attributes(response)["max-age"]) <= 600


async def test_wrong_keys_are_401_and_runner_credentials_403(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_key(client, "admin")
    runner = await make_key(client, "runner", bearer(admin["secret"]))
    async with browser(app) as tab:
        for wrong in ("ryk_000000000000_nope", admin["secret"] + "x", "garbage"):
            refused = await tab.post("/v1/auth/login", json={"api_key": wrong})
            assert_problem(refused, 401, "unauthorized")
            assert "set-cookie" not in refused.headers
        assert_problem(await tab.post("/v1/auth/login", json={}), 401, "unauthorized")
        refused = await tab.post("/v1/auth/login", json={"api_key": runner["secret"]})
        assert_problem(refused, 403, "forbidden")
        assert "set-cookie" not in refused.headers
        await make_pipeline(client, headers=bearer(admin["secret"]))
        run = await make_run(client, headers=bearer(admin["secret"]))
        claim = await client.post("/v1/runner/claim", json={}, headers=bearer(runner["secret"]))
        assert claim.json()["run"]["id"] == run["id"]
        token = claim.json()["token"]
        refused = await tab.post("/v1/auth/login", json={"api_key": token})
        assert_problem(refused, 403, "forbidden")
        assert_problem(await tab.get("/v1/runs"), 401, "unauthorized")  # no session came of it
        assert_problem(
            await tab.post("/v1/auth/login", json={"api_key": admin["secret"], "extra": 1}),
            400,
            "invalid_input",
        )


async def test_cookie_mutations_need_the_csrf_token(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_key(client, "admin")
    viewer = await make_key(client, "viewer", bearer(admin["secret"]))
    async with browser(app) as tab:
        csrf = (await login(tab, admin["secret"]))["csrf_token"]
        body = {"name": "from-browser"}
        assert_problem(await tab.post("/v1/pipelines", json=body), 403, "csrf_failed")
        wrong = {"X-CSRF-Token": csrf[:-1] + ("a" if csrf[-1] != "a" else "b")}
        assert_problem(
            await tab.post("/v1/pipelines", json=body, headers=wrong), 403, "csrf_failed"
        )
        created = await tab.post("/v1/pipelines", json=body, headers={"X-CSRF-Token": csrf})
        assert created.status_code == 201, created.text
        run = await tab.post(
            "/v1/runs", json={"pipeline": "from-browser"}, headers={"X-CSRF-Token": csrf}
        )
        assert run.status_code == 201, run.text
        assert run.json()["created_by"] == admin["id"]  # the session acts as its key
        # DELETE is a mutation too; reads need no token
        refused = await tab.delete(f"/v1/api-keys/{viewer['id']}")
        assert_problem(refused, 403, "csrf_failed")
        assert (await tab.get("/v1/api-keys")).status_code == 200
        # Authorization wins over the cookie: a bearer request needs no CSRF token
        as_key = await tab.post(
            "/v1/runs", json={"pipeline": "from-browser"}, headers=bearer(admin["secret"])
        )
        assert as_key.status_code == 201, as_key.text

    async with browser(app) as tab:  # a viewer's session reads and never writes
        csrf = (await login(tab, viewer["secret"]))["csrf_token"]
        assert (await tab.get("/v1/runs")).status_code == 200
        refused = await tab.post(
            "/v1/runs", json={"pipeline": "from-browser"}, headers={"X-CSRF-Token": csrf}
        )
        assert_problem(refused, 403, "forbidden")


async def test_logout_ends_the_session_and_clears_the_cookie(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_key(client, "admin")
    async with browser(app) as tab:
        session = await login(tab, admin["secret"])
        secret = tab.cookies[COOKIE]
        assert_problem(await tab.post("/v1/auth/logout"), 403, "csrf_failed")
        assert (await tab.get("/v1/runs")).status_code == 200  # still logged in
        out = await tab.post("/v1/auth/logout", headers={"X-CSRF-Token": session["csrf_token"]})
        assert out.status_code == 204, out.text
        assert cookie_attributes(out)[COOKIE] in ("", '""')
        assert int(cookie_attributes(out)["max-age"]) == 0
        assert COOKIE not in tab.cookies
        assert_problem(await tab.get("/v1/runs"), 401, "unauthorized")

    stale = {"Cookie": f"{COOKIE}={secret}"}  # the old cookie, kept by someone
    assert_problem(await client.get("/v1/runs", headers=stale), 401, "unauthorized")
    assert_problem(await client.get("/v1/auth/session", headers=stale), 401, "unauthorized")
    again = await client.post(
        "/v1/auth/logout", headers={**stale, "X-CSRF-Token": session["csrf_token"]}
    )
    assert_problem(again, 401, "unauthorized")
    assert "max-age=0" in again.headers["set-cookie"].lower()  # a stale cookie is cleared
    audit = await client.get(
        "/v1/audit", params={"target_id": session["id"]}, headers=bearer(admin["secret"])
    )
    assert [e["action"] for e in audit.json()["data"]] == ["session.logout", "session.login"]


async def test_revoking_or_expiring_the_key_ends_its_sessions(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_key(client, "admin")
    member = await make_key(client, "member", bearer(admin["secret"]))
    soon = datetime.now(UTC) + timedelta(seconds=1)
    brief = await make_key(client, "viewer", bearer(admin["secret"]), expires_at=soon.isoformat())
    async with browser(app) as tab, browser(app) as other:
        await login(tab, member["secret"])
        await login(other, brief["secret"])
        assert (await tab.get("/v1/runs")).status_code == 200
        assert (await other.get("/v1/runs")).status_code == 200
        revoked = await client.delete(
            f"/v1/api-keys/{member['id']}", headers=bearer(admin["secret"])
        )
        assert revoked.status_code == 204
        refused = await tab.get("/v1/runs")  # at once on this replica
        assert_problem(refused, 401, "unauthorized")
        assert "revoked" in refused.json()["detail"]
        assert_problem(await tab.get("/v1/auth/session"), 401, "unauthorized")
        await asyncio.sleep(1.1)
        assert_problem(await other.get("/v1/runs"), 401, "unauthorized")


@pytest.mark.settings(session_hours=1 / 3600)
async def test_a_session_expires_after_its_lifetime(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_key(client, "admin")
    async with browser(app) as tab:
        await login(tab, admin["secret"])
        assert (await tab.get("/v1/runs")).status_code == 200
        secret = tab.cookies[COOKIE]
        await asyncio.sleep(1.1)
        stale = {"Cookie": f"{COOKIE}={secret}"}  # as a browser that ignored Max-Age would
        refused = await client.get("/v1/runs", headers=stale)
        assert_problem(refused, 401, "unauthorized")
        assert "log in again" in refused.json()["detail"]


async def test_an_event_stream_needs_only_the_cookie(
    live: httpx.AsyncClient,
) -> None:
    """A browser's ``EventSource`` cannot send headers (DESIGN §15): the cookie authenticates."""
    admin = await make_key(live, "admin")
    as_admin = bearer(admin["secret"])
    await make_pipeline(live, headers=as_admin)
    run = await make_run(live, headers=as_admin)
    response = await live.post("/v1/auth/login", json={"api_key": admin["secret"]})
    assert response.status_code == 200, response.text
    assert COOKIE in live.cookies  # the client keeps it, as a browser would
    path = f"/v1/runs/{run['id']}/events?stream=true"
    frames = []
    async with live.stream("GET", path) as stream:
        assert stream.status_code == 200, await stream.aread()
        assert stream.headers["content-type"].startswith("text/event-stream")
        async for frame in SSEReader(stream).frames():
            frames.append(frame)
            if frame.event == "run.queued":  # live now: end the run from elsewhere
                cancelled = await live.post(f"/v1/runs/{run['id']}/cancel", headers=as_admin)
                assert cancelled.status_code == 200, cancelled.text
            if frame.event == "stream.end":
                break
    assert [f.event for f in frames][-2:] == ["run.cancelled", "stream.end"]
    live.cookies.clear()
    assert_problem(await live.get(path), 401, "unauthorized")


async def test_idempotency_keys_of_a_session_belong_to_its_key_alone(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_key(client, "admin")
    alice = await make_key(client, "member", bearer(admin["secret"]))
    bob = await make_key(client, "member", bearer(admin["secret"]))
    await make_pipeline(client, headers=bearer(admin["secret"]))
    body = {"pipeline": "deploy", "input": {"n": 1}}
    key = {"Idempotency-Key": "create-1"}
    async with browser(app) as alice_tab, browser(app) as bob_tab:
        alice_csrf = {"X-CSRF-Token": (await login(alice_tab, alice["secret"]))["csrf_token"]}
        bob_csrf = {"X-CSRF-Token": (await login(bob_tab, bob["secret"]))["csrf_token"]}

        first = await alice_tab.post("/v1/runs", json=body, headers={**key, **alice_csrf})
        assert first.status_code == 201, first.text
        again = await alice_tab.post("/v1/runs", json=body, headers={**key, **alice_csrf})
        assert again.headers.get("idempotent-replayed") == "true"
        assert again.json() == first.json()
        # the session is its key: the key's own retry gets the same answer
        by_key = await client.post(
            "/v1/runs", json=body, headers={**key, **bearer(alice["secret"])}
        )
        assert by_key.headers.get("idempotent-replayed") == "true"
        assert by_key.json()["id"] == first.json()["id"]
        # without the CSRF token nothing is replayed: the request is refused
        refused = await alice_tab.post("/v1/runs", json=body, headers=key)
        assert_problem(refused, 403, "csrf_failed")

        # another principal with the same Idempotency-Key gets its own run, never alice's
        bobs = await bob_tab.post("/v1/runs", json=body, headers={**key, **bob_csrf})
        assert bobs.status_code == 201 and "idempotent-replayed" not in bobs.headers
        assert bobs.json()["id"] != first.json()["id"]
        assert bobs.json()["created_by"] == bob["id"]
        # alice's cookie with bob's key: Authorization wins, so it is bob's replay
        mixed = await alice_tab.post(
            "/v1/runs", json=body, headers={**key, **bearer(bob["secret"])}
        )
        assert mixed.json()["id"] == bobs.json()["id"]
        # the admin (another key of the workspace) gets a run of its own
        admins = await client.post(
            "/v1/runs", json=body, headers={**key, **bearer(admin["secret"])}
        )
        assert admins.status_code == 201 and "idempotent-replayed" not in admins.headers
        assert admins.json()["id"] not in (first.json()["id"], bobs.json()["id"])


async def test_runner_callbacks_through_a_session_name_their_lease_like_a_key(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    admin = await make_key(client, "admin")
    await make_pipeline(client, headers=bearer(admin["secret"]))
    run = await make_run(client, headers=bearer(admin["secret"]))
    async with browser(app) as tab:
        csrf = {"X-CSRF-Token": (await login(tab, admin["secret"]))["csrf_token"]}
        claimed = await tab.post("/v1/runner/claim", json={}, headers=csrf)
        assert claimed.status_code == 200 and claimed.json()["run"]["id"] == run["id"]
        path = f"/v1/runner/runs/{run['id']}/status"
        unfenced = await tab.post(path, json={"progress": 0.5}, headers=csrf)
        assert_problem(unfenced, 400, "invalid_input")
        lease = {"X-Runyard-Lease": claimed.json()["lease"]["id"]}
        done = await tab.post(path, json={"status": "completed"}, headers={**csrf, **lease})
        assert done.status_code == 200, done.text
