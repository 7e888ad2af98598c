"""Evaluations (DESIGN §10): one extract run per prompt version x config x document, and the
table a user decides with, live as the runs finish (JSON and SSE), on each database."""

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.agent_support import make_model
from tests.extraction_support import add_version, make_config, make_document, make_prompt
from tests.llm_fake import FakeModelServer, Reply
from tests.support import assert_problem, read_until_end

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(90),
    pytest.mark.settings(worker_enabled=True, model_max_retries=0),
]

DOCUMENTS = {
    "Invoice A": {"total": 100, "vendor": "Acme Corp", "date": "2026-01-02"},
    "Invoice B": {"total": 42, "vendor": "globex"},
    "Invoice C": {"total": 7, "vendor": "Initech"},
}
#: what prompt version 1 answers for each document (version 2 answers the truth)
FIRST_ANSWERS = {
    "Invoice A": '{"total": 100, "vendor": "ACME"}',  # p 1/2, r 1/3, f1 0.4, accuracy 1/3
    "Invoice B": '{"total": "42.0", "vendor": " Globex "}',  # all 1
    "Invoice C": "I could not read it.",  # not JSON: the run fails
}


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:

        def answer(body: Any) -> Reply:
            prompt = body["messages"][-1]["content"]
            name = next(n for n in DOCUMENTS if n in prompt)
            text = json.dumps(DOCUMENTS[name]) if "v2" in prompt else FIRST_ANSWERS[name]
            return Reply(text=text, input_tokens=1000, output_tokens=100)

        server.responder = answer
        yield server


async def _setup(client: httpx.AsyncClient, server: FakeModelServer) -> dict[str, Any]:
    model = await make_model(client, server, prices=(1.0, 2.0))
    prompt = await make_prompt(client, template="Extract the fields. {{ document }}")
    await add_version(client, prompt["id"], "v2: extract every field. {{ document }}")
    documents = [
        (await make_document(client, name, truth, name=name))["id"]
        for name, truth in DOCUMENTS.items()
    ]
    return {
        "prompt_versions": [
            {"prompt_id": prompt["id"], "version": 1},
            {"prompt_id": prompt["id"], "version": 2},
        ],
        "config_ids": [(await make_config(client, model["id"]))["id"]],
        "document_ids": documents,
    }


async def test_two_prompt_versions_over_three_documents_give_the_expected_table(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    body = await _setup(client, model_server)
    created = await client.post("/v1/evaluations", json={"name": "v1 vs v2", **body})
    assert created.status_code == 201, created.text
    evaluation = created.json()
    assert evaluation["id"].startswith("evl_")
    assert evaluation["runs"]["total"] == 6

    frames = await read_until_end(client, f"/v1/evaluations/{evaluation['id']}?stream=true")
    assert frames[-1].event == "stream.end"
    assert frames[-1].data == {"status": "completed"}
    final = frames[-2].data
    assert final["status"] == "completed"
    assert final == (await client.get(f"/v1/evaluations/{evaluation['id']}")).json()
    assert final["runs"] == {"total": 6, "pending": 0, "completed": 5, "failed": 1}

    first, second = final["results"]
    config_id = body["config_ids"][0]
    assert (first["prompt_version"], first["config_id"]) == (1, config_id)
    assert (first["runs"], first["completed"], first["failures"], first["scored"]) == (3, 2, 1, 2)
    assert first["precision"] == pytest.approx((0.5 + 1) / 2)
    assert first["recall"] == pytest.approx((1 / 3 + 1) / 2)
    assert first["f1"] == pytest.approx((0.4 + 1) / 2)
    assert first["accuracy"] == pytest.approx((1 / 3 + 1) / 2)
    # every run's call is paid for, the failed one's too: 1,000 in at $1/M, 100 out at $2/M
    assert first["cost_usd"] == pytest.approx(3 * 0.0012)
    assert (first["input_tokens"], first["output_tokens"]) == (3000, 300)
    assert first["p50_latency_ms"] > 0

    assert second["prompt_version"] == 2
    assert (second["runs"], second["completed"], second["failures"]) == (3, 3, 0)
    assert (second["precision"], second["recall"], second["f1"]) == (1.0, 1.0, 1.0)
    assert second["cost_usd"] == pytest.approx(3 * 0.0012)

    runs = (await client.get("/v1/runs", params={"pipeline": "extract", "limit": 50})).json()
    assert len(runs["data"]) == 6
    one = (await client.get(f"/v1/runs/{runs['data'][0]['id']}")).json()
    assert one["metadata"] == {"evaluation_id": evaluation["id"]}
    listed = (await client.get("/v1/evaluations")).json()["data"]
    assert [(e["id"], e["name"]) for e in listed] == [(evaluation["id"], "v1 vs v2")]


async def test_an_evaluation_is_checked_whole_before_any_run_is_made(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    body = await _setup(client, model_server)
    missing_document = {**body, "document_ids": [*body["document_ids"], "doc_gone"]}
    refused = await client.post("/v1/evaluations", json=missing_document)
    assert "doc_gone" in assert_problem(refused, 404, "document_not_found")["detail"]
    missing_version = {
        **body,
        "prompt_versions": [{"prompt_id": body["prompt_versions"][0]["prompt_id"], "version": 3}],
    }
    assert_problem(
        await client.post("/v1/evaluations", json=missing_version),
        404,
        "prompt_version_not_found",
    )
    missing_config = {**body, "config_ids": ["mcf_gone"]}
    assert_problem(
        await client.post("/v1/evaluations", json=missing_config), 404, "model_config_not_found"
    )
    twice = {**body, "config_ids": body["config_ids"] * 2}
    assert_problem(await client.post("/v1/evaluations", json=twice), 400, "invalid_input")
    # a prompt id alone means its latest version: the same as version 2, named twice
    version_2 = body["prompt_versions"][1]
    latest = {**body, "prompt_versions": [version_2, version_2["prompt_id"]]}
    assert_problem(await client.post("/v1/evaluations", json=latest), 400, "invalid_input")
    huge = {**body, "document_ids": [f"doc_{n}" for n in range(501)]}
    assert_problem(await client.post("/v1/evaluations", json=huge), 400, "evaluation_too_large")
    assert_problem(await client.get("/v1/evaluations/evl_missing"), 404, "evaluation_not_found")

    assert (await client.get("/v1/runs?pipeline=extract")).json()["data"] == []
    assert (await client.get("/v1/evaluations")).json()["data"] == []


async def test_an_evaluation_over_the_quota_makes_no_run(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    workspace = (await client.post("/v1/workspaces", json={"name": "free"})).json()
    assert workspace["tier"] == "free"  # 10 runs a month
    theirs = {"X-Workspace-Id": workspace["id"]}
    client.headers.update(theirs)
    body = await _setup(client, model_server)
    prompt_id = body["prompt_versions"][0]["prompt_id"]
    await add_version(client, prompt_id, "v3 {{ document }}")
    fourth = await make_document(client, "Invoice D")
    over = {
        **body,
        "prompt_versions": [*body["prompt_versions"], prompt_id],  # a bare id: the latest, 3
        "document_ids": [*body["document_ids"], fourth["id"]],
    }
    refused = await client.post("/v1/evaluations", json=over)  # 3 versions x 4 documents: 12
    problem = assert_problem(refused, 402, "quota_exceeded")
    assert problem["limit"] == 10
    assert (await client.get("/v1/runs")).json()["data"] == []
    assert (await client.get("/v1/usage")).json()["runs"] == 0
