"""Extract runs (DESIGN §10, §15) against a fake OpenAI-compatible server on loopback: the
model asked for a JSON object, the object stored as the output, field-level metrics against
the ground truth, latency, tokens and cost; missing ground truth never leaves a run stuck."""

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.agent_support import make_model
from tests.extraction_support import (
    add_version,
    make_config,
    make_document,
    make_prompt,
    tiny_pdf,
)
from tests.llm_fake import FakeModelServer, Reply
from tests.support import assert_problem, make_pipeline, make_run, wait_for_status

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(60),
    pytest.mark.settings(worker_enabled=True, model_max_retries=0),
]
TRUTH = {"number": "42", "vendor": "Acme Corp", "total": 100, "lines": [{"sku": "A-1"}]}


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


async def _setup(
    client: httpx.AsyncClient, server: FakeModelServer, truth: dict[str, Any] | None = TRUTH
) -> dict[str, Any]:
    model = await make_model(client, server, prices=(2.0, 8.0))
    return {
        "prompt_id": (await make_prompt(client))["id"],
        "config_id": (await make_config(client, model["id"], temperature=0))["id"],
        "document_id": (await make_document(client, "Invoice 42 from ACME Corp.", truth))["id"],
    }


async def _extract(client: httpx.AsyncClient, **input: Any) -> dict[str, Any]:
    created = await client.post("/v1/runs", json={"pipeline": "extract", "input": input})
    assert created.status_code == 201, created.text
    return await wait_for_status(client, created.json()["id"], "completed", "failed")


async def _events(client: httpx.AsyncClient, run_id: str, kind: str) -> list[dict[str, Any]]:
    page = (await client.get(f"/v1/runs/{run_id}/events?limit=1000")).json()["data"]
    return [e["data"] for e in page if e["type"] == kind]


async def test_an_extraction_is_scored_field_by_field(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    ids = await _setup(client, model_server)
    answer = {"number": 42, "vendor": " ACME  corp ", "total": 99, "currency": "EUR"}
    model_server.script(
        Reply(text=orjson.dumps(answer).decode(), input_tokens=1000, output_tokens=50)
    )
    run = await _extract(client, **ids)
    assert run["status"] == "completed", run["error"]
    assert run["output"] == answer
    assert run["input"]["prompt_version"] == 1  # the latest, recorded at create
    # extracted 4 leaves, expected 4 (/number, /vendor, /total, /lines/0/sku);
    # correct: /number (42 = "42") and /vendor (normalised) -> 2
    metrics = run["metrics"]
    assert (metrics["fields_extracted"], metrics["fields_expected"]) == (4, 4)
    assert metrics["fields_correct"] == 2
    assert metrics["precision"] == pytest.approx(0.5)
    assert metrics["recall"] == pytest.approx(0.5)
    assert metrics["f1"] == pytest.approx(0.5)
    assert metrics["accuracy"] == pytest.approx(2 / 5)  # 5 paths in either side
    assert metrics["latency_ms"] > 0
    assert run["usage"] == {
        "input_tokens": 1000,
        "output_tokens": 50,
        "cost_usd": pytest.approx((1000 * 2.0 + 50 * 8.0) / 1e6),
    }
    request = model_server.requests[0].body
    assert request["response_format"] == {"type": "json_object"}
    assert request["temperature"] == 0
    assert "JSON object" in request["messages"][0]["content"]
    assert request["messages"][1]["content"].endswith("Invoice 42 from ACME Corp.")
    (scored,) = await _events(client, run["id"], "extraction.scored")
    assert scored["scored"] is True
    assert scored["wrong"] == ["/total"]
    assert scored["missing"] == ["/lines/0/sku"]
    assert scored["extra"] == ["/currency"]

    listed = await client.get(
        "/v1/runs",
        params={"pipeline": "extract", "input.document_id": ids["document_id"]},
    )
    assert [r["id"] for r in listed.json()["data"]] == [run["id"]]


async def test_no_ground_truth_completes_with_a_note(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    ids = await _setup(client, model_server, truth=None)
    model_server.script(Reply(text='{"number": "42"}'))
    run = await _extract(client, **ids)
    assert run["status"] == "completed", run["error"]
    assert run["output"] == {"number": "42"}
    assert set(run["metrics"]) == {"latency_ms"}
    (scored,) = await _events(client, run["id"], "extraction.scored")
    assert scored == {
        "scored": False,
        "note": "ground_truth_missing",
        "prompt_id": ids["prompt_id"],
        "prompt_version": 1,
        "config_id": ids["config_id"],
        "document_id": ids["document_id"],
    }


async def test_every_id_is_checked_when_the_run_is_created(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    ids = await _setup(client, model_server)
    cases = [
        ("prompt_id", "prm_missing", "prompt_not_found"),
        ("config_id", "mcf_missing", "model_config_not_found"),
        ("document_id", "doc_missing", "document_not_found"),
    ]
    for key, value, code in cases:
        refused = await client.post(
            "/v1/runs", json={"pipeline": "extract", "input": {**ids, key: value}}
        )
        assert value in assert_problem(refused, 404, code)["detail"]
    version = await client.post(
        "/v1/runs", json={"pipeline": "extract", "input": {**ids, "prompt_version": 5}}
    )
    assert_problem(version, 404, "prompt_version_not_found")
    incomplete = await client.post(
        "/v1/runs", json={"pipeline": "extract", "input": {"prompt_id": ids["prompt_id"]}}
    )
    assert_problem(incomplete, 400, "invalid_input")
    templated = await add_version(
        client, ids["prompt_id"], "In {{ language }}: {{ document }}", variables=["language"]
    )
    needs = await client.post("/v1/runs", json={"pipeline": "extract", "input": ids})
    assert "language" in assert_problem(needs, 400, "invalid_input")["detail"]
    assert templated["version"] == 2
    assert not (await client.get("/v1/runs?pipeline=extract")).json()["data"]
    assert model_server.requests == []


async def test_a_pdf_is_extracted_end_to_end(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    model = await make_model(client, model_server)
    prompt = await make_prompt(client, template="Find the invoice number and vendor.")
    config = await make_config(client, model["id"])
    uploaded = await client.post(
        "/v1/documents",
        files={"file": ("invoice.pdf", tiny_pdf("Invoice 7", "Vendor: Globex"), "application/pdf")},
        data={"ground_truth": '{"number": 7, "vendor": "Globex"}'},
    )
    assert uploaded.status_code == 201, uploaded.text
    model_server.script(Reply(text='```json\n{"number": "7", "vendor": "globex"}\n```'))
    run = await _extract(
        client,
        prompt_id=prompt["id"],
        config_id=config["id"],
        document_id=uploaded.json()["id"],
    )
    assert run["status"] == "completed", run["error"]
    assert run["metrics"]["f1"] == 1.0 and run["metrics"]["accuracy"] == 1.0
    messages = model_server.requests[0].body["messages"]
    # no {{ document }} in the template: the template is the system message, the PDF's
    # text the user message
    assert messages[0]["content"].startswith("Find the invoice number and vendor.")
    assert messages[1] == {"role": "user", "content": "Invoice 7\n\nVendor: Globex"}


async def test_a_json_schema_config_is_sent_and_enforced(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    ids = await _setup(client, model_server)
    model_id = (await client.get(f"/v1/model-configs/{ids['config_id']}")).json()["model_id"]
    schema = {"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}}
    config = await make_config(
        client,
        model_id,
        name="schema",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "invoice", "schema": schema, "strict": True},
        },
    )
    model_server.script(Reply(text='{"number": "42"}', input_tokens=30, output_tokens=7))
    run = await _extract(client, **{**ids, "config_id": config["id"]})
    assert run["status"] == "failed"
    assert run["error"]["code"] == "llm_output_invalid"
    assert run["usage"]["input_tokens"] == 30  # what the failed answer cost still counts
    sent = model_server.requests[0].body
    assert sent["response_format"]["json_schema"] == {
        "name": "invoice",
        "schema": schema,
        "strict": True,
    }

    model_server.script(Reply(text="[1, 2]"))
    listed = await _extract(client, **ids)
    assert listed["status"] == "failed"
    assert "not an object" in listed["error"]["message"]


async def test_the_extract_step_in_a_pipeline_of_ones_own(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    ids = await _setup(client, model_server)
    await make_pipeline(
        client,
        steps=[
            {
                "name": "read",
                "uses": "extract",
                "with": {
                    "prompt_id": ids["prompt_id"],
                    "config_id": ids["config_id"],
                    "document_id": "{{ input.doc }}",
                },
            },
            {
                "name": "check",
                "uses": "command",
                "with": {"run": "true"},
                "if": "steps.read.output.vendor == 'Acme Corp'",
            },
        ],
    )
    model_server.script(Reply(text='{"vendor": "Acme Corp"}'))
    created = await make_run(client, input={"doc": ids["document_id"]})
    run = await wait_for_status(client, created["id"], "completed", "failed")
    assert run["status"] == "completed", run["error"]
    assert run["output"]["read"] == {"vendor": "Acme Corp"}
    assert run["steps"][1]["status"] == "completed"
    assert run["metrics"]["precision"] == 1.0 and run["metrics"]["recall"] == 0.25

    missing = await make_run(client, input={"doc": "doc_gone"})
    failed = await wait_for_status(client, missing["id"], "completed", "failed")
    assert failed["error"]["code"] == "document_not_found"

    await make_pipeline(client, name="bare", steps=[{"name": "read", "uses": "extract"}])
    bare = await make_run(client, "bare")
    refused = await wait_for_status(client, bare["id"], "completed", "failed")
    assert refused["error"]["code"] == "invalid_step"
    assert "prompt_id, config_id, document_id" in refused["error"]["message"]


async def test_a_replayed_extraction_runs_the_version_it_recorded(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    ids = await _setup(client, model_server)
    model_server.script(Reply(text='{"number": "42"}'), Reply(text='{"number": "42"}'))
    first = await _extract(client, **ids)
    await add_version(client, ids["prompt_id"], "v2 {{ document }}")
    replay = await client.post(f"/v1/runs/{first['id']}/replay", json={})
    assert replay.status_code == 201, replay.text
    again = await wait_for_status(client, replay.json()["id"], "completed", "failed")
    assert again["input"]["prompt_version"] == 1
    assert not model_server.requests[1].body["messages"][1]["content"].startswith("v2")
