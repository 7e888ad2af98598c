"""The model client over the real SDKs, against the fake model server on loopback."""

import asyncio
import json
import logging
import subprocess
import sys
import time
from contextlib import aclosing
from typing import Any

import anthropic
import httpx
import openai
import pytest

from runyard.llm.client import cost_usd, parse_arguments, stream_chat
from runyard.llm.types import (
    ChatMessage,
    Finished,
    ModelError,
    Prices,
    ProviderConfig,
    ProviderType,
    ResolvedModel,
    StreamItem,
    TextDelta,
    ToolCall,
    ToolCallRequest,
    ToolSpec,
    Usage,
)
from tests.conftest import free_port
from tests.llm_fake import FakeModelServer, Reply

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

KEY = "sk-test-SECRET-123"
PROVIDERS = pytest.mark.parametrize("provider", ["openai_compatible", "anthropic"])
HELLO = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hello?")]
LOOKUP = ToolSpec(
    "lookup",
    "Look up the weather of a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
FAST = {"retry_base_seconds": 0.001}


def model_on(
    server: FakeModelServer,
    provider: ProviderType,
    *,
    prices: Prices = Prices(),
    url: str | None = None,
) -> ResolvedModel:
    base = url or server.url
    if provider != "anthropic":
        base += "/v1"
    return ResolvedModel(
        "mdl_test", "prv_test", "fake-model", ProviderConfig(provider, base, KEY), prices
    )


async def collect(
    model: ResolvedModel, messages: list[ChatMessage], **options: Any
) -> list[StreamItem]:
    return [item async for item in stream_chat(model, messages, **options)]


async def model_error(model: ResolvedModel, **options: Any) -> ModelError:
    with pytest.raises(ModelError) as caught:
        await collect(model, HELLO, **options)
    return caught.value


# -- streaming ----------------------------------------------------------------------------


@PROVIDERS
async def test_streamed_text_joins_to_the_reply(
    model_server: FakeModelServer, provider: ProviderType
) -> None:
    text = "Hello there, this arrives in many small pieces."
    model_server.script(Reply(text=text, chunk=4))

    items = await collect(model_on(model_server, provider), HELLO)

    deltas = [item for item in items if isinstance(item, TextDelta)]
    assert "".join(d.text for d in deltas) == text
    assert len(deltas) == 12
    assert items[len(deltas) :] == [Usage(10, 5), Finished("stop")]
    assert model_server.requests[0].finished


@PROVIDERS
async def test_a_tool_call_round_trips_in_the_providers_format(
    model_server: FakeModelServer, provider: ProviderType
) -> None:
    model = model_on(model_server, provider)
    arguments = {"city": "Paris", "days": [1, 2], "note": 'a "quoted" ünïcode text'}
    model_server.script(
        Reply(text="Let me look.", tool_calls=[("lookup", arguments)]), Reply(text="Sunny.")
    )

    first = await collect(model, HELLO, tools=[LOOKUP])

    call = next(item for item in first if isinstance(item, ToolCall))
    assert (call.name, call.arguments) == ("lookup", arguments)
    assert first[-1] == Finished("tool_calls")
    follow_up = [
        *HELLO,
        ChatMessage(
            "assistant",
            "Let me look.",
            tool_calls=(ToolCallRequest(call.id, call.name, arguments),),
        ),
        ChatMessage("tool", "sunny, 21 C", tool_call_id=call.id, name="lookup"),
    ]
    second = await collect(model, follow_up, tools=[LOOKUP])

    assert "".join(i.text for i in second if isinstance(i, TextDelta)) == "Sunny."
    sent = model_server.requests[1].body
    if provider == "anthropic":
        assert sent["system"] == "Be brief."
        assert sent["tools"] == [
            {"name": "lookup", "description": LOOKUP.description, "input_schema": LOOKUP.parameters}
        ]
        assert sent["messages"][1:] == [
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": call.id, "name": "lookup", "input": arguments},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}
                ],
            },
        ]
    else:
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
        assert sent["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": LOOKUP.description,
                    "parameters": LOOKUP.parameters,
                },
            }
        ]
        assistant, result = sent["messages"][2:]
        assert assistant["role"] == "assistant" and assistant["content"] == "Let me look."
        assert assistant["tool_calls"] == [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": "lookup", "arguments": json.dumps(arguments)},
            }
        ]
        assert result == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}


@PROVIDERS
async def test_usage_is_reported_and_costed(
    model_server: FakeModelServer, provider: ProviderType
) -> None:
    model_server.script(Reply(text="hi", input_tokens=1200, output_tokens=300))
    model = model_on(model_server, provider, prices=Prices(2.5, 10.0))

    items = await collect(model, HELLO)

    usage = next(item for item in items if isinstance(item, Usage))
    assert usage == Usage(1200, 300)
    assert cost_usd(usage, model.prices) == 0.006


@PROVIDERS
async def test_options_reach_the_provider(
    model_server: FakeModelServer, provider: ProviderType
) -> None:
    await collect(model_on(model_server, provider), HELLO, temperature=0.2, max_tokens=77)
    await collect(model_on(model_server, provider), HELLO)

    with_options, defaults = (r.body for r in model_server.requests)
    assert with_options["temperature"] == 0.2 and "temperature" not in defaults
    assert with_options["stream"] is True
    if provider == "anthropic":
        assert (with_options["max_tokens"], defaults["max_tokens"]) == (77, 4096)
    else:
        assert with_options["max_tokens"] == 77 and "max_tokens" not in defaults
        assert with_options["stream_options"] == {"include_usage": True}


@PROVIDERS
async def test_a_length_stop_is_normalized(
    model_server: FakeModelServer, provider: ProviderType
) -> None:
    model_server.script(Reply(text="cut sh", finish="length"))

    items = await collect(model_on(model_server, provider), HELLO)

    assert items[-1] == Finished("length")


def test_costs_need_at_least_one_price() -> None:
    usage = Usage(1_000_000, 3)
    assert cost_usd(usage, Prices()) is None
    assert cost_usd(usage, Prices(input_per_mtok=0.15)) == 0.15
    assert cost_usd(usage, Prices(output_per_mtok=0.6)) == 0.0000018
    assert cost_usd(Usage(1, 1), Prices(1e-7, 0)) == 0.0


def test_tool_arguments_that_are_not_a_json_object_stay_raw() -> None:
    assert parse_arguments('{"a": 1}') == {"a": 1}
    assert parse_arguments("") == {}
    assert parse_arguments("[1, 2]") == "[1, 2]"
    assert parse_arguments('{"a": ') == '{"a": '


# -- credentials --------------------------------------------------------------------------


@PROVIDERS
async def test_the_api_key_is_sent_to_the_provider(
    model_server: FakeModelServer, provider: ProviderType
) -> None:
    await collect(model_on(model_server, provider), HELLO)

    headers = model_server.requests[0].headers
    if provider == "anthropic":  # anthropic 2.x sends the key as a bearer token, 0.x as x-api-key
        assert KEY in (headers.get("x-api-key"), headers.get("authorization", "")[7:])
    else:
        assert headers["authorization"] == f"Bearer {KEY}"


@PROVIDERS
async def test_a_refused_key_fails_without_leaking_it(
    provider: ProviderType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeModelServer(
        api_key="the-right-key"
    ) as server:  # echoes the key it got, as OpenAI does
        error = await model_error(model_on(server, provider), **FAST)
        assert len(server.requests) == 1

    assert (error.code, error.status) == ("model_auth_failed", 401)
    assert str(error) == error.message == "the model provider refused the API key (401)"
    assert caplog.records, "the SDKs logged nothing at DEBUG: the check proves nothing"
    assert KEY not in caplog.text
    assert all(KEY not in record.getMessage() for record in caplog.records)


@PROVIDERS
async def test_the_key_is_redacted_from_provider_text(
    model_server: FakeModelServer, provider: ProviderType
) -> None:
    model_server.script(
        Reply(status=400, error_message=f"bad request from key {KEY}: max_tokens too big")
    )

    error = await model_error(model_on(model_server, provider))

    assert (error.code, error.status) == ("model_request_invalid", 400)
    assert KEY not in error.message
    assert "key ***: max_tokens too big" in error.message


# -- errors and retries -------------------------------------------------------------------


@PROVIDERS
@pytest.mark.parametrize(
    ("status", "code"),
    [
        (403, "model_auth_failed"),
        (404, "model_not_found"),
        (422, "model_request_invalid"),
        (429, "model_rate_limited"),
        (503, "model_unavailable"),
        (529, "model_unavailable"),
    ],
)
async def test_provider_statuses_become_model_errors(
    model_server: FakeModelServer, provider: ProviderType, status: int, code: str
) -> None:
    model_server.script(Reply(status=status, forever=True))

    error = await model_error(model_on(model_server, provider), max_retries=0)

    assert (error.code, error.status) == (code, status)
    assert f"({status})" in error.message


@PROVIDERS
async def test_a_rate_limit_is_retried_after_retry_after(
    model_server: FakeModelServer, provider: ProviderType
) -> None:
    model_server.script(Reply(status=429, retry_after=0), Reply(text="fine now"))
    started = time.monotonic()

    # a backoff of 5 s would show: Retry-After: 0 is what sets the wait
    items = await collect(model_on(model_server, provider), HELLO, retry_base_seconds=5)

    assert time.monotonic() - started < 2
    assert "".join(i.text for i in items if isinstance(i, TextDelta)) == "fine now"
    assert len(model_server.requests) == 2


@PROVIDERS
async def test_a_server_that_keeps_failing_gives_up_after_max_retries(
    model_server: FakeModelServer, provider: ProviderType
) -> None:
    model_server.script(Reply(status=500, forever=True))

    error = await model_error(model_on(model_server, provider), max_retries=2, **FAST)

    assert (error.code, error.status) == ("model_unavailable", 500)
    assert error.message.startswith("the model provider failed (500) after 2 retries")
    assert len(model_server.requests) == 3


@PROVIDERS
async def test_an_unreachable_provider_is_unavailable(
    model_server: FakeModelServer, provider: ProviderType
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"

    error = await model_error(model_on(model_server, provider, url=closed), max_retries=1, **FAST)

    assert (error.code, error.status) == ("model_unavailable", None)
    assert error.message == "could not connect to the model provider after 1 retry"


@PROVIDERS
async def test_a_stream_cut_after_text_fails_at_once(
    model_server: FakeModelServer, provider: ProviderType
) -> None:
    model_server.script(Reply(text="abcdefghijkl", chunk=2, cut_after=2), Reply(text="never asked"))
    items: list[StreamItem] = []

    async def consume() -> None:
        async for item in stream_chat(model_on(model_server, provider), HELLO, **FAST):
            items.append(item)

    with pytest.raises(ModelError) as caught:
        await consume()

    assert caught.value.code == "model_unavailable"
    assert items == [TextDelta("ab"), TextDelta("cd")]
    assert len(model_server.requests) == 1


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


async def test_openai_streams_are_read_as_servers_write_them(
    model_server: FakeModelServer,
) -> None:
    """Spacing, comments, named events, a data field split over two lines, several chunks in
    one write, usage without a field, and nothing after ``[DONE]``."""
    split = json.dumps(_chunk({"content": " world"})).replace(', "finish', ',\ndata: "finish')
    model_server.script(
        Reply(
            events=[
                b": keep-alive\n\n",
                b"data:" + json.dumps(_chunk({"role": "assistant", "content": "Hello"})).encode(),
                b"\n\nevent: message\nid: 7\ndata: " + split.encode() + b"\n\n",
                b"data: " + json.dumps(_chunk({}, "stop")).encode() + b"\n\n"
                b"data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": 9}}).encode(),
                b"\n\ndata: [DONE]\n\n",
                b"data: " + json.dumps(_chunk({"content": "ignored"})).encode() + b"\n\n",
            ]
        )
    )
    items = await collect(model_on(model_server, "openai_compatible"), HELLO)
    assert items == [TextDelta("Hello"), TextDelta(" world"), Usage(9, 0), Finished("stop")]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            {"error": {"message": "overloaded, try later", "type": "server_error"}},
            "the model provider failed: overloaded, try later",
        ),
        ("not json", "the model provider sent a stream chunk that is not a JSON object"),
        ([1, 2], "the model provider sent a stream chunk that is not a JSON object"),
        ({"choices": ["text"]}, "the model provider sent a stream chunk of another shape"),
    ],
)
async def test_a_bad_openai_stream_event_fails_the_call_clearly(
    model_server: FakeModelServer, event: Any, message: str
) -> None:
    raw = event.encode() if isinstance(event, str) else json.dumps(event).encode()
    first = b"data: " + json.dumps(_chunk({"content": "Hi"})).encode() + b"\n\n"
    model_server.script(Reply(events=[first, b"data: " + raw + b"\n\n"]))
    items: list[StreamItem] = []

    async def consume() -> None:
        async for item in stream_chat(model_on(model_server, "openai_compatible"), HELLO):
            items.append(item)

    with pytest.raises(ModelError) as caught:
        await consume()
    assert (caught.value.code, caught.value.message) == ("model_unavailable", message)
    assert items == [TextDelta("Hi")]
    assert len(model_server.requests) == 1  # after text: never retried


@PROVIDERS
async def test_a_stalled_stream_times_out(
    model_server: FakeModelServer, provider: ProviderType
) -> None:
    model_server.script(Reply(text="abcdefgh", chunk=4, tokens_per_second=0.5))

    with pytest.raises(ModelError) as caught:
        await collect(model_on(model_server, provider), HELLO, timeout_seconds=0.3, **FAST)

    assert caught.value.code == "model_timeout"
    assert len(model_server.requests) == 1  # it had yielded: no retry


# -- cancellation -------------------------------------------------------------------------


@PROVIDERS
async def test_leaving_the_stream_closes_the_request(
    model_server: FakeModelServer, provider: ProviderType
) -> None:
    model_server.script(Reply(text="x" * 400, chunk=4, tokens_per_second=50))  # 2 s of text

    async with aclosing(stream_chat(model_on(model_server, provider), HELLO)) as items:
        async for item in items:
            assert isinstance(item, TextDelta)
            break

    received = await model_server.wait_done_async(0, seconds=3)
    assert not received.finished
    assert len(received.text_times) < 100


@PROVIDERS
async def test_cancelling_the_consumer_closes_the_request(
    model_server: FakeModelServer, provider: ProviderType
) -> None:
    model_server.script(Reply(text="x" * 400, chunk=4, tokens_per_second=50))  # 2 s of text
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in stream_chat(model_on(model_server, provider), HELLO):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    received = await model_server.wait_done_async(0, seconds=3)
    assert not received.finished


# -- the fake itself ----------------------------------------------------------------------


def test_the_fake_answers_without_streaming_and_lists_models(model_server: FakeModelServer) -> None:
    model_server.script(Reply(text="plain"), Reply(tool_calls=[("lookup", {"city": "Oslo"})]))
    with openai.OpenAI(base_url=f"{model_server.url}/v1", api_key=KEY, max_retries=0) as client:
        completion = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}]
        )
        assert completion.choices[0].message.content == "plain"
        assert [m.id for m in client.models.list()] == ["fake-model"]
    with anthropic.Anthropic(base_url=model_server.url, api_key=KEY, max_retries=0) as other:
        message = other.messages.create(
            model="fake-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.stop_reason == "tool_use"
        assert message.content[0].type == "tool_use" and message.content[0].input == {
            "city": "Oslo"
        }
    assert all(r.finished for r in model_server.requests)


def test_the_fake_runs_in_the_foreground() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.llm_fake", "--port", str(port), "--text", "from the CLI"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{port}"
        body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
        assert response.json()["choices"][0]["message"]["content"] == "from the CLI"
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def test_the_fake_records_when_text_went_out(model_server: FakeModelServer) -> None:
    model_server.script(Reply(text="abcdef", chunk=2, tokens_per_second=100))
    with openai.OpenAI(base_url=f"{model_server.url}/v1", api_key=KEY, max_retries=0) as client:
        before = time.time()
        chunks = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with chunks:
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    received = model_server.wait_done(0)
    assert text == "abcdef" and received.finished
    assert len(received.text_times) == 3 and received.text_times == sorted(received.text_times)
    assert model_server.send_times == [received.first_text_at]
    assert before <= received.text_times[0] <= received.text_times[-1] - 0.015
