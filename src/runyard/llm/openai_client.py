"""Chat completions through the ``openai`` SDK: OpenAI and OpenAI-compatible servers (vLLM,
Ollama, LM Studio...). ``client.stream_chat`` is the way in.

The SDK sends the request and raises its errors; the streamed chunks are read from its raw
response here, as plain JSON: building the SDK's typed chunk objects cost more than everything
else a token goes through on its way to a session's subscribers.
"""

import json
from collections.abc import AsyncGenerator, AsyncIterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
import orjson
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
)

from runyard.llm.client import Failure, parse_arguments, provider_message, tls_context
from runyard.llm.types import (
    ChatMessage,
    Finished,
    ModelError,
    ResolvedModel,
    StreamItem,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)

FINISH_REASONS = {"function_call": "tool_calls"}


async def stream(
    model: ResolvedModel,
    messages: Sequence[ChatMessage],
    tools: Sequence[ToolSpec],
    *,
    temperature: float | None,
    max_tokens: int | None,
    timeout_seconds: float,
    response_format: dict[str, Any] | None = None,
) -> AsyncGenerator[StreamItem, None]:
    config = model.config
    # OpenAI itself wants max_completion_tokens (its reasoning models refuse max_tokens);
    # compatible servers mostly know only max_tokens.
    tokens_field = "max_completion_tokens" if config.provider_type == "openai" else "max_tokens"
    given = openai.omit if max_tokens is None else max_tokens
    async with openai.AsyncOpenAI(
        base_url=config.base_url,
        api_key=config.api_key or "not-needed",
        max_retries=0,
        timeout=timeout_seconds,
        http_client=openai.DefaultAsyncHttpxClient(verify=tls_context(), timeout=timeout_seconds),
    ) as client:
        request = client.chat.completions.with_streaming_response.create(
            model=model.model,
            messages=[_message(m) for m in messages],
            tools=[_tool(t) for t in tools] if tools else openai.omit,
            temperature=openai.omit if temperature is None else temperature,
            max_completion_tokens=given if tokens_field == "max_completion_tokens" else openai.omit,
            max_tokens=given if tokens_field == "max_tokens" else openai.omit,
            # JSON mode or a JSON schema, as the body's field (the SDK's types are not needed)
            extra_body=None if response_format is None else {"response_format": response_format},
            stream=True,
            stream_options={"include_usage": True},
        )
        async with request as response:
            async for item in _items(_chunks(response.http_response)):
                yield item


def failure(exc: Exception) -> Failure | None:
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return Failure("timeout")
    if isinstance(exc, openai.APIConnectionError | httpx2.RequestError):
        return Failure("connection")
    if isinstance(exc, openai.APIStatusError):
        return Failure("status", exc.status_code, exc.response.headers, provider_message(exc.body))
    if isinstance(exc, openai.APIError):  # an error event inside the stream
        return Failure("other", detail=provider_message(exc.body) or exc.message)
    if isinstance(exc, openai.OpenAIError):
        return Failure("other", detail=type(exc).__name__)
    return None


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


async def _chunks(response: httpx2.Response) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON objects of an OpenAI event stream, up to ``[DONE]``. An error object in the
    stream raises the SDK's ``APIError``, as the SDK's own stream does."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
            continue
        if line or not data:
            continue  # event names, ids, comments; or an empty event
        payload, data = "\n".join(data), []
        if payload.startswith("[DONE]"):
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise ModelError("model_unavailable", _UNREADABLE) from None
        if not isinstance(chunk, dict):
            raise ModelError("model_unavailable", _UNREADABLE)
        if error := chunk.get("error"):
            message = error.get("message") if isinstance(error, dict) else None
            raise openai.APIError(
                message if isinstance(message, str) and message else "a streaming error",
                response.request,
                body=error,
            )
        yield chunk


_UNREADABLE = "the model provider sent a stream chunk that is not a JSON object"


async def _items(chunks: AsyncIterable[dict[str, Any]]) -> AsyncGenerator[StreamItem, None]:
    calls: dict[int, _PartialCall] = {}
    usage = Usage(0, 0)
    reason: str | None = None
    async for chunk in chunks:
        try:
            if counts := chunk.get("usage"):
                usage = Usage(
                    int(counts.get("prompt_tokens") or 0),
                    int(counts.get("completion_tokens") or 0),
                )
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if content := delta.get("content"):
                    yield TextDelta(str(content))
                for fragment in delta.get("tool_calls") or ():
                    call = calls.setdefault(fragment.get("index", 0), _PartialCall())
                    call.id = fragment.get("id") or call.id
                    if function := fragment.get("function"):
                        call.name = function.get("name") or call.name
                        call.arguments.append(function.get("arguments") or "")
                if choice.get("finish_reason") is not None:
                    reason = str(choice["finish_reason"])
                break  # the first choice only
        except (AttributeError, TypeError, ValueError):
            raise ModelError(
                "model_unavailable", "the model provider sent a stream chunk of another shape"
            ) from None
    if reason is None:
        raise ModelError("model_unavailable", "the model's stream ended before it finished")
    for index in sorted(calls):
        call = calls[index]
        yield ToolCall(call.id, call.name, parse_arguments("".join(call.arguments)))
    yield usage
    yield Finished(FINISH_REASONS.get(reason, reason))


def _message(message: ChatMessage) -> ChatCompletionMessageParam:
    content = message.content or ""
    if message.role == "system":
        return {"role": "system", "content": content}
    if message.role == "user":
        return {"role": "user", "content": content}
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": content}
    assistant: ChatCompletionAssistantMessageParam = {
        "role": "assistant",
        "content": message.content,
    }
    if message.tool_calls:
        assistant["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    return assistant


def _tool(tool: ToolSpec) -> ChatCompletionFunctionToolParam:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }
