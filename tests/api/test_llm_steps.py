"""``llm`` steps in ``steps`` pipelines (DESIGN §7): template → model → text or checked JSON,
streamed deltas, usage and cost, against a fake OpenAI-compatible server on loopback."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.agent_support import make_model
from tests.llm_fake import FakeModelServer, Reply
from tests.support import make_pipeline, make_run, wait_for_status

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(60),
    pytest.mark.settings(worker_enabled=True, model_max_retries=0),
]


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


async def _run(client: httpx.AsyncClient, steps: list[dict[str, Any]] | None, **input: Any) -> Any:
    """A run of a new pipeline of ``steps`` (None: of the pipeline made before)."""
    if steps is not None:
        await make_pipeline(client, steps=steps)
    run = await make_run(client, input=input)
    return await wait_for_status(client, run["id"], "completed", "failed")


async def test_a_prompt_template_streams_text_and_counts_usage(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    model = await make_model(client, model_server, prices=(3.0, 15.0))
    model_server.script(
        Reply(text="Bonjour, Ada !", input_tokens=1000, output_tokens=200),
        Reply(text="Hallo, Ada!", input_tokens=500, output_tokens=100),
    )
    final = await _run(
        client,
        [
            {
                "name": "french",
                "uses": "llm",
                "with": {"prompt": "Greet {{ input.name }} in French.", "system": "Be brief."},
            },
            {
                "name": "german",
                "uses": "llm",
                "with": {"prompt": "Now German.", "model_id": model["id"], "temperature": 0.2},
            },
        ],
        name="Ada",
    )
    assert final["status"] == "completed", final["error"]
    assert final["output"]["french"] == {"text": "Bonjour, Ada !", "model": "fake-model"}
    assert final["output"]["german"]["text"] == "Hallo, Ada!"
    assert final["usage"] == {
        "input_tokens": 1500,
        "output_tokens": 300,
        "cost_usd": pytest.approx((1500 * 3.0 + 300 * 15.0) / 1e6),
    }
    first = model_server.requests[0].body
    assert first["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Greet Ada in French."},
    ]
    assert model_server.requests[1].body["temperature"] == 0.2
    events = (await client.get(f"/v1/runs/{final['id']}/events?limit=1000")).json()["data"]
    deltas = [e for e in events if e["type"] == "text.delta" and e["step"] == "french"]
    assert "".join(e["data"]["delta"] for e in deltas) == "Bonjour, Ada !"
    usages = [e["data"] for e in events if e["type"] == "usage"]
    assert [u["input_tokens"] for u in usages] == [1000, 500]


async def test_json_output_is_checked_against_the_schema(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    await make_model(client, model_server)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    model_server.script(Reply(text='```json\n{"city": "Lyon", "population": 522250}\n```'))
    step = {"name": "extract", "uses": "llm", "with": {"prompt": "Lyon?", "output_schema": schema}}
    good = await _run(client, [step])
    assert good["status"] == "completed", good["error"]
    assert good["output"]["extract"] == {"city": "Lyon", "population": 522250}
    assert "JSON Schema" in model_server.requests[0].body["messages"][0]["content"]

    model_server.script(Reply(text='{"city": "Lyon", "population": "many"}'))
    bad = await _run(client, None)
    assert bad["status"] == "failed"
    assert bad["error"]["code"] == "llm_output_invalid"
    assert bad["error"]["step"] == "extract"
    assert "population" in bad["error"]["message"]


async def test_a_model_that_refuses_the_key_fails_the_step_clearly(
    client: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    await make_model(client, model_server)
    model_server.script(Reply(status=401))
    final = await _run(client, [{"name": "ask", "uses": "llm", "with": {"prompt": "hi"}}])
    assert final["status"] == "failed"
    assert final["error"]["code"] == "model_auth_failed"
    assert final["error"]["step"] == "ask"


async def test_without_a_model_the_step_fails_and_says_so(client: httpx.AsyncClient) -> None:
    final = await _run(client, [{"name": "ask", "uses": "llm", "with": {"prompt": "hi"}}])
    assert final["status"] == "failed"
    assert final["error"]["code"] == "no_default_model"
