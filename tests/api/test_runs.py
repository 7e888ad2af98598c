"""The runs API (DESIGN §5): create, read, list, start, cancel, delete — on both databases."""

import asyncio

import httpx
import pytest

from tests.support import assert_problem, make_pipeline, make_run, report

pytestmark = pytest.mark.anyio


async def test_create_run_queues_it_and_records_created_and_queued_events(
    client: httpx.AsyncClient,
) -> None:
    pipeline = await make_pipeline(client)
    response = await client.post(
        "/v1/runs",
        json={
            "pipeline": "deploy",
            "input": {"target": "prod"},
            "tags": ["web"],
            "codename": "blue-heron",
            "metadata": {"team": "infra"},
            "require_approval": True,
        },
        headers={"X-User-Id": "alice"},
    )
    assert response.status_code == 201
    run = response.json()
    assert response.headers["location"] == f"/v1/runs/{run['id']}"
    assert run["id"].startswith("run_")
    assert run["status"] == "queued"
    assert run["pipeline_id"] == pipeline["id"]
    assert run["pipeline_version"] == 1
    assert run["created_by"] == "alice"
    assert run["tags"] == ["web"] and run["codename"] == "blue-heron"
    assert run["metadata"] == {"team": "infra"} and run["require_approval"] is True
    assert run["attempt"] == 0 and run["last_sequence"] == 2
    assert run["created_at"].endswith("Z") and run["queued_at"] == run["created_at"]
    events = (await client.get(f"/v1/runs/{run['id']}/events")).json()["data"]
    assert [e["type"] for e in events] == ["run.created", "run.queued"]
    assert (await client.get(f"/v1/runs/{run['id']}")).json() == run


async def test_create_by_pipeline_id_and_unstarted_run_waits_in_pending(
    client: httpx.AsyncClient,
) -> None:
    pipeline = await make_pipeline(client)
    response = await client.post("/v1/runs", json={"pipeline_id": pipeline["id"], "start": False})
    assert response.status_code == 201
    run = response.json()
    assert run["status"] == "pending" and run["queued_at"] is None

    started = await client.post(f"/v1/runs/{run['id']}/start")
    assert started.status_code == 202
    assert started.json()["message"] == "Run started"
    assert started.json()["run"]["status"] == "queued"
    assert_problem(await client.post(f"/v1/runs/{run['id']}/start"), 409, "invalid_transition")


async def test_unknown_pipeline_is_404_and_missing_pipeline_is_400(
    client: httpx.AsyncClient,
) -> None:
    assert_problem(
        await client.post("/v1/runs", json={"pipeline": "nope"}), 404, "pipeline_not_found"
    )
    assert_problem(
        await client.post("/v1/runs", json={"pipeline_id": "pl_missing"}), 404, "pipeline_not_found"
    )
    assert_problem(await client.post("/v1/runs", json={"input": {}}), 400, "invalid_input")


async def test_input_is_validated_against_the_pipeline_schema_with_field_errors(
    client: httpx.AsyncClient,
) -> None:
    schema = {
        "type": "object",
        "required": ["target"],
        "properties": {
            "target": {"enum": ["staging", "production"]},
            "replicas": {"type": "integer"},
        },
    }
    await make_pipeline(client, input_schema=schema)
    response = await client.post(
        "/v1/runs", json={"pipeline": "deploy", "input": {"target": "moon", "replicas": "two"}}
    )
    problem = assert_problem(response, 400, "invalid_input")
    locs = sorted(tuple(e["loc"]) for e in problem["errors"])
    assert locs == [("body", "input", "replicas"), ("body", "input", "target")]
    await make_run(client, input={"target": "production", "replicas": 2})


async def test_client_supplied_id_is_used_and_reuse_is_409(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    run = await make_run(client, id="run_clientchosen0001")
    assert run["id"] == "run_clientchosen0001"
    assert_problem(
        await client.post("/v1/runs", json={"pipeline": "deploy", "id": "run_clientchosen0001"}),
        409,
        "run_exists",
    )
    assert_problem(
        await client.post("/v1/runs", json={"pipeline": "deploy", "id": "bad id"}),
        400,
        "invalid_input",
    )


async def test_get_unknown_run_and_another_workspace_run_are_404(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    run = await make_run(client)
    assert_problem(await client.get("/v1/runs/run_00000000000000"), 404, "run_not_found")
    assert_problem(
        await client.get(f"/v1/runs/{run['id']}", headers={"X-Workspace-Id": "ws_other"}),
        404,
        "workspace_not_found",
    )


async def test_list_filters_combine_and_items_omit_heavy_fields(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    await make_pipeline(client, name="invoices")
    a = await make_run(
        client,
        input={"prompt_id": "prm_1", "n": 3, "user_intent": {"target": "prod"}},
        tags=["web", "eu"],
        codename="blue-heron",
    )
    b = await make_run(client, input={"prompt_id": "prm_2", "n": "3"}, tags=["web"], start=False)
    c = await make_run(client, "invoices", input={"prompt_id": "prm_1", "flag": True}, tags=["eu"])

    async def ids(query: str) -> list[str]:
        response = await client.get(f"/v1/runs?{query}")
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()["data"]]

    assert await ids("") == [c["id"], b["id"], a["id"]]
    assert await ids("status=pending") == [b["id"]]
    assert await ids("status=pending&status=queued") == [c["id"], b["id"], a["id"]]
    assert await ids("pipeline=invoices") == [c["id"]]
    assert await ids("tag=web") == [b["id"], a["id"]]
    assert await ids("tag=web&tag=eu") == [a["id"]]
    assert await ids("codename=blue-heron") == [a["id"]]
    assert await ids("input.prompt_id=prm_1") == [c["id"], a["id"]]
    assert await ids("input.n=3") == [b["id"], a["id"]]
    assert await ids("input.flag=true") == [c["id"]]
    assert await ids("input.user_intent.target=prod") == [a["id"]]
    assert await ids("input.prompt_id=prm_1&pipeline=deploy") == [a["id"]]
    assert await ids("q=heron") == [a["id"]]
    assert await ids(f"created_after={a['created_at']}") == [c["id"], b["id"], a["id"]]
    assert await ids(f"created_before={a['created_at']}") == []
    item = (await client.get("/v1/runs?limit=1")).json()["data"][0]
    assert not {"steps", "input", "output"} & item.keys()
    assert item["last_sequence"] >= 1
    assert_problem(await client.get("/v1/runs?status=sleeping"), 400, "invalid_input")


async def test_cursor_pagination_walks_every_run_once_even_with_concurrent_inserts(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(client)
    created = [(await make_run(client))["id"] for _ in range(7)]
    seen: list[str] = []
    cursor = None
    for page_number in range(10):
        query = "/v1/runs?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(query)).json()
        seen += [r["id"] for r in page["data"]]
        if page_number == 0:
            await make_run(client)  # newer than everything paged: must not shift the walk
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == list(reversed(created))
    assert_problem(await client.get("/v1/runs?cursor=garbage"), 400, "invalid_cursor")
    assert_problem(await client.get("/v1/runs?limit=0"), 400, "invalid_input")
    assert_problem(await client.get("/v1/runs?limit=201"), 400, "invalid_input")


async def test_cancel_gives_the_honest_result_for_each_state(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)

    async def cancel(run_id: str, **body: object) -> dict[str, object]:
        response = await client.post(f"/v1/runs/{run_id}/cancel", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    pending = await make_run(client, start=False)
    assert (await cancel(pending["id"]))["result"] == "cancelled"
    queued = await make_run(client)
    result = await cancel(queued["id"], reason="not needed")
    assert result["result"] == "cancelled"
    assert result["run"]["status"] == "cancelled"  # type: ignore[index]
    assert (await cancel(queued["id"]))["result"] == "already_terminal"

    running = await make_run(client)
    assert (await report(client, running["id"], status="running")).status_code == 200
    assert (await cancel(running["id"]))["result"] == "cancelling"
    assert (await cancel(running["id"]))["result"] == "cancelling"
    acked = await report(client, running["id"], status="cancelled")
    assert acked.json()["run"]["status"] == "cancelled"

    forced = await make_run(client)
    await report(client, forced["id"], status="running")
    assert (await cancel(forced["id"], force=True))["result"] == "cancelled"
    late = await report(client, forced["id"], status="completed")
    assert_problem(late, 409, "invalid_transition")
    assert late.json()["current_status"] == "cancelled"

    assert (await client.post(f"/v1/runs/{queued['id']}/cancel")).status_code == 200  # no body
    assert_problem(await client.post("/v1/runs/run_0000000000nope/cancel"), 404, "run_not_found")


async def test_delete_removes_the_run_and_its_events_and_cancels_it_first(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(client)
    run = await make_run(client)
    assert (await client.delete(f"/v1/runs/{run['id']}")).status_code == 204
    assert_problem(await client.get(f"/v1/runs/{run['id']}"), 404, "run_not_found")
    assert_problem(await client.get(f"/v1/runs/{run['id']}/events"), 404, "run_not_found")
    assert_problem(await client.delete(f"/v1/runs/{run['id']}"), 404, "run_not_found")
    audit = await client.get("/v1/runs")
    assert audit.json()["data"] == []


async def test_every_mutation_is_audited_with_its_actor(client: httpx.AsyncClient) -> None:
    await make_pipeline(client)
    headers = {"X-User-Id": "bob"}
    run = (
        await client.post("/v1/runs", json={"pipeline": "deploy", "start": False}, headers=headers)
    ).json()
    await client.post(f"/v1/runs/{run['id']}/start", headers=headers)
    await client.post(f"/v1/runs/{run['id']}/cancel", json={"reason": "done"}, headers=headers)
    entries = (await client.get(f"/v1/runs/{run['id']}/audit")).json()["data"]
    assert [e["action"] for e in entries] == ["run.create", "run.start", "run.cancel"]
    assert {e["actor"] for e in entries} == {"bob"}
    assert entries[2]["details"]["reason"] == "done"
    assert all(e["run_id"] == run["id"] for e in entries)


async def test_concurrent_cancels_and_completion_leave_one_terminal_state(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(client)
    run = await make_run(client)
    await report(client, run["id"], status="running")
    responses = await asyncio.gather(
        report(client, run["id"], status="completed"),
        client.post(f"/v1/runs/{run['id']}/cancel", json={"force": True}),
        report(client, run["id"], status="failed", error="boom"),
    )
    final = (await client.get(f"/v1/runs/{run['id']}")).json()
    assert final["status"] in {"completed", "cancelled", "failed"}
    events = (await client.get(f"/v1/runs/{run['id']}/events?type=run.*")).json()["data"]
    terminal = [e for e in events if e["type"] in {"run.completed", "run.failed", "run.cancelled"}]
    assert len(terminal) == 1 and events[-1] is not None and terminal[0] == events[-1]
    assert sum(r.status_code == 200 for r in responses) >= 1


async def test_replay_creates_a_new_run_of_the_same_pipeline_and_input(
    client: httpx.AsyncClient,
) -> None:
    await make_pipeline(client, input_schema={"type": "object", "required": ["target"]})
    original = await make_run(client, input={"target": "prod"}, tags=["web"], metadata={"a": 1})
    await client.post(f"/v1/runs/{original['id']}/cancel")
    replay = await client.post(f"/v1/runs/{original['id']}/replay")
    assert replay.status_code == 201
    again = replay.json()
    assert again["id"] != original["id"] and again["replay_of"] == original["id"]
    assert again["status"] == "queued" and again["input"] == {"target": "prod"}
    assert again["tags"] == ["web"] and again["metadata"] == {"a": 1}
    assert replay.headers["location"] == f"/v1/runs/{again['id']}"
    changed = await client.post(
        f"/v1/runs/{original['id']}/replay",
        json={"input": {"target": "staging"}, "tags": [], "start": False},
    )
    assert changed.json()["input"] == {"target": "staging"} and changed.json()["tags"] == []
    assert changed.json()["status"] == "pending"
    bad = await client.post(f"/v1/runs/{original['id']}/replay", json={"input": {}})
    assert_problem(bad, 400, "invalid_input")
    assert_problem(await client.post("/v1/runs/run_0000000000none/replay"), 404, "run_not_found")
