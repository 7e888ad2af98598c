"""Runner callbacks and reading events (DESIGN §6.1-6.2, §8) on both databases."""

import httpx
import orjson
import pytest

from tests.support import assert_problem, make_pipeline, make_run, post_events, report

pytestmark = pytest.mark.anyio


@pytest.fixture
async def run(client: httpx.AsyncClient) -> dict[str, object]:
    await make_pipeline(client)
    return await make_run(client)


async def test_single_batch_and_seed_forms_get_dense_sequences(
    client: httpx.AsyncClient, run: dict
) -> None:
    url = f"/v1/runner/runs/{run['id']}/events"
    single = await client.post(url, json={"type": "log", "data": {"level": "info", "message": "a"}})
    assert single.status_code == 200
    assert single.json()["first_sequence"] == single.json()["last_sequence"] == 3
    seed = await client.post(
        url, json={"eventType": "deploy.started", "message": "go", "metadata": {"k": 1}}
    )
    assert seed.json()["first_sequence"] == 4
    batch = await post_events(
        client,
        run["id"],
        [
            {
                "type": "console.line",
                "data": {"stream": "stdout", "text": "npm install"},
                "step": "build",
            },
            {"type": "metric", "data": {"name": "f1", "value": 0.9}, "sequence": 999},
        ],
    )
    assert (batch["first_sequence"], batch["last_sequence"]) == (5, 6)
    assert len(batch["event_ids"]) == 2 and batch["ok"] is True

    events = (await client.get(f"/v1/runs/{run['id']}/events")).json()["data"]
    assert [e["sequence"] for e in events] == [1, 2, 3, 4, 5, 6]
    seed_event = events[3]
    assert seed_event["type"] == "deploy.started"
    assert seed_event["data"] == {"message": "go", "metadata": {"k": 1}}
    assert seed_event["source"] == "runner" and seed_event["stream_id"] == run["id"]
    assert events[4]["step"] == "build" and events[4]["id"] == batch["event_ids"][0]
    assert events[0]["source"] == "server"


async def test_a_batch_is_atomic_when_one_event_is_bad(
    client: httpx.AsyncClient, run: dict
) -> None:
    response = await client.post(
        f"/v1/runner/runs/{run['id']}/events",
        json={"events": [{"type": "log", "data": {}}, {"type": "Bad Type"}]},
    )
    problem = assert_problem(response, 400, "invalid_input")
    assert problem["errors"][0]["loc"] == ["body", "events", 1, "type"]
    assert (await client.get(f"/v1/runs/{run['id']}")).json()["last_sequence"] == 2


async def test_reserved_types_and_missing_type_are_refused(
    client: httpx.AsyncClient, run: dict
) -> None:
    url = f"/v1/runner/runs/{run['id']}/events"
    for reserved in (
        "run.completed",
        "step.started",
        "approval.granted",
        "build.done",
        "stream.end",
    ):
        assert_problem(await client.post(url, json={"type": reserved}), 400, "reserved_event_type")
    assert_problem(await client.post(url, json={"data": {}}), 400, "invalid_input")
    assert_problem(await client.post(url, json={"type": "x" * 65}), 400, "invalid_input")
    assert_problem(await client.post(url, json={"events": []}), 400, "invalid_input")
    naive = await client.post(url, json={"type": "log", "time": "2026-11-22T10:00:00"})
    assert assert_problem(naive, 400, "invalid_input")["errors"][0]["loc"] == ["body", "time"]
    assert_problem(await client.post(url, json=[1, 2]), 400, "invalid_input")
    assert_problem(
        await client.post(url, json={"type": "log", "data": "text"}), 400, "invalid_input"
    )
    assert_problem(
        await client.post(url, content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )


async def test_limits_answer_413(client: httpx.AsyncClient, run: dict) -> None:
    url = f"/v1/runner/runs/{run['id']}/events"
    big = {"type": "log", "data": {"message": "x" * (256 * 1024)}}
    assert_problem(await client.post(url, json=big), 413, "payload_too_large")
    many = {"events": [{"type": "log"}] * 1001}
    assert_problem(await client.post(url, json=many), 413, "payload_too_large")
    heavy = {"events": [{"type": "log", "data": {"m": "y" * 200_000}}] * 21}  # > 4 MiB
    assert_problem(await client.post(url, json=heavy), 413, "payload_too_large")
    assert (await client.get(f"/v1/runs/{run['id']}")).json()["last_sequence"] == 2
    ok = await client.post(url, json={"events": [{"type": "log"}] * 1000})
    assert ok.json()["last_sequence"] == 1002
    timed = await client.post(url, json={"type": "log", "time": "2026-11-22T10:00:00+02:00"})
    assert timed.status_code == 200
    last = (await client.get(f"/v1/runs/{run['id']}/events?after_sequence=1002")).json()["data"]
    assert last[0]["time"] == "2026-11-22T08:00:00.000Z"


async def test_events_of_unknown_run_are_404_and_of_finished_run_409(
    client: httpx.AsyncClient, run: dict
) -> None:
    assert_problem(
        await client.post("/v1/runner/runs/run_0000000000none/events", json={"type": "log"}),
        404,
        "run_not_found",
    )
    await report(client, run["id"], status="running")
    await report(client, run["id"], status="completed")
    late = await client.post(f"/v1/runner/runs/{run['id']}/events", json={"type": "log"})
    assert_problem(late, 409, "run_finished")


async def test_status_callback_clamps_progress_and_records_everything(
    client: httpx.AsyncClient, run: dict
) -> None:
    running = await report(client, run["id"], status="running")
    assert running.status_code == 200
    body = running.json()
    assert body["ok"] is True and body["run"]["status"] == "running"
    assert body["run"]["attempt"] == 1 and body["run"]["started_at"] is not None
    again = await report(client, run["id"], status="running", progress=7, current_step="build")
    assert again.status_code == 200 and again.json()["run"]["progress"] == 1.0
    low = await report(
        client, run["id"], progress=-3, metrics={"f1": 0.5}, usage={"input_tokens": 10}
    )
    assert low.json()["run"]["progress"] == 0.0
    failed = await report(
        client, run["id"], status="failed", error="exit code 2", metrics={"latency_ms": 5}
    )
    final = failed.json()["run"]
    assert final["status"] == "failed" and final["progress"] == 1.0
    assert final["error"] == {"code": "runner_error", "message": "exit code 2", "step": "build"}
    assert final["metrics"] == {"f1": 0.5, "latency_ms": 5}
    assert final["usage"] == {"input_tokens": 10}
    assert final["completed_at"] is not None and final["duration_ms"] >= 0
    types = [e["type"] for e in (await client.get(f"/v1/runs/{run['id']}/events")).json()["data"]]
    assert types == [
        "run.created",
        "run.queued",
        "run.started",
        "run.progress",
        "run.progress",
        "run.failed",
    ]
    assert_problem(await report(client, run["id"], progress=0.5), 409, "invalid_transition")
    assert_problem(await report(client, run["id"], status="paused"), 400, "invalid_input")


async def test_pages_filter_by_type_and_resume_after_a_sequence(
    client: httpx.AsyncClient, run: dict
) -> None:
    await post_events(
        client, run["id"], [{"type": "log", "data": {"message": str(i)}} for i in range(5)]
    )
    page = (await client.get(f"/v1/runs/{run['id']}/events?after_sequence=2&limit=3")).json()
    assert [e["sequence"] for e in page["data"]] == [3, 4, 5]
    assert page["next_after_sequence"] == 5 and page["has_more"] is True
    rest = (await client.get(f"/v1/runs/{run['id']}/events?after_sequence=5")).json()
    assert [e["sequence"] for e in rest["data"]] == [6, 7] and rest["has_more"] is False
    empty = (await client.get(f"/v1/runs/{run['id']}/events?after_sequence=50")).json()
    assert empty == {"data": [], "next_after_sequence": 50, "has_more": False}
    typed = (
        await client.get(f"/v1/runs/{run['id']}/events?type=run.created&type=run.queued")
    ).json()
    assert [e["type"] for e in typed["data"]] == ["run.created", "run.queued"]
    prefix = (await client.get(f"/v1/runs/{run['id']}/events?type=run.*")).json()
    assert len(prefix["data"]) == 2
    assert_problem(
        await client.get(f"/v1/runs/{run['id']}/events?limit=1001"), 400, "invalid_input"
    )
    assert_problem(
        await client.get(f"/v1/runs/{run['id']}/events?after_sequence=-1"), 400, "invalid_input"
    )


async def test_ndjson_logs_and_logfile(client: httpx.AsyncClient, run: dict) -> None:
    await post_events(
        client,
        run["id"],
        [
            {
                "type": "console.line",
                "data": {"stream": "stdout", "text": "npm install"},
                "step": "build",
            },
            {"type": "log", "data": {"level": "warning", "message": "slow disk"}},
            {"type": "metric", "data": {"name": "x", "value": 1}},
        ],
    )
    ndjson = await client.get(f"/v1/runs/{run['id']}/events?format=ndjson&after_sequence=1&limit=2")
    assert ndjson.headers["content-type"] == "application/x-ndjson"
    lines = [orjson.loads(line) for line in ndjson.text.splitlines()]
    assert [e["sequence"] for e in lines] == [2, 3]
    accept = await client.get(
        f"/v1/runs/{run['id']}/events", headers={"Accept": "application/x-ndjson"}
    )
    assert len(accept.text.splitlines()) == 5

    logs = (await client.get(f"/v1/runs/{run['id']}/logs")).json()
    assert [e["type"] for e in logs["data"]] == ["console.line", "log"]
    assert logs["next_after_sequence"] == 4 and logs["has_more"] is False
    text = await client.get(f"/v1/runs/{run['id']}/logs?format=text")
    assert text.headers["content-type"].startswith("text/plain")
    first, second = text.text.splitlines()
    assert first.endswith("[stdout] build npm install")
    assert second.endswith("[WARNING] slow disk")

    logfile = await client.get(f"/v1/runs/{run['id']}/logfile")
    assert logfile.headers["content-type"] == "application/x-ndjson"
    assert [orjson.loads(x)["sequence"] for x in logfile.text.splitlines()] == [1, 2, 3, 4, 5]
