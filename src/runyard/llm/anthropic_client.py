"""Messages through the ``anthropic`` SDK. ``client.stream_chat`` is the way in."""

from collections.abc import AsyncGenerator, AsyncIterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import anthropic
import httpx2
from anthropic import types as sdk

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

DEFAULT_MAX_TOKENS = 4096  # the Messages API requires max_tokens
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
}
# An error event inside a 200 stream carries only its type: the status it stands for.
ERROR_TYPES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


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
    del response_format  # Anthropic has no JSON mode: the prompt asks for JSON
    system, conversation = _conversation(messages)
    async with anthropic.AsyncAnthropic(
        base_url=config.base_url,
        api_key=config.api_key or "not-needed",
        max_retries=0,
        timeout=timeout_seconds,
        http_client=anthropic.DefaultAsyncHttpxClient(
            verify=tls_context(), timeout=timeout_seconds
        ),
    ) as client:
        events = await client.messages.create(
            model=model.model,
            max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
            messages=conversation,
            system=system if system else anthropic.omit,
            tools=[_tool(t) for t in tools] if tools else anthropic.omit,
            # this SDK has no temperature argument; the API still takes the field
            extra_body=None if temperature is None else {"temperature": temperature},
            stream=True,
        )
        async with events:
            async for item in _items(events):
                yield item


def failure(exc: Exception) -> Failure | None:
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return Failure("timeout")
    if isinstance(exc, anthropic.APIConnectionError | httpx2.RequestError):
        return Failure("connection")
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        if status < 400:  # an error event inside the stream
            status = ERROR_TYPES.get(str(exc.type), 500)
        return Failure("status", status, exc.response.headers, provider_message(exc.body))
    if isinstance(exc, anthropic.AnthropicError):
        return Failure("other", detail=type(exc).__name__)
    return None


@dataclass
class _PartialCall:
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)


async def _items(
    events: AsyncIterable[sdk.RawMessageStreamEvent],
) -> AsyncGenerator[StreamItem, None]:
    calls: dict[int, _PartialCall] = {}
    input_tokens = output_tokens = 0
    reason: str | None = None
    stopped = False
    async for event in events:
        if isinstance(event, sdk.RawMessageStartEvent):
            usage = event.message.usage
            input_tokens = _input_tokens(
                usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens
            )
            output_tokens = usage.output_tokens
        elif isinstance(event, sdk.RawContentBlockStartEvent):
            block = event.content_block
            if isinstance(block, sdk.ToolUseBlock):
                calls[event.index] = _PartialCall(block.id, block.name)
        elif isinstance(event, sdk.RawContentBlockDeltaEvent):
            delta = event.delta
            if isinstance(delta, sdk.TextDelta) and delta.text:
                yield TextDelta(delta.text)
            elif isinstance(delta, sdk.InputJSONDelta) and event.index in calls:
                calls[event.index].arguments.append(delta.partial_json)
        elif isinstance(event, sdk.RawContentBlockStopEvent):
            call = calls.pop(event.index, None)
            if call is not None:
                yield ToolCall(call.id, call.name, parse_arguments("".join(call.arguments)))
        elif isinstance(event, sdk.RawMessageDeltaEvent):
            reason = event.delta.stop_reason or reason
            output_tokens = event.usage.output_tokens
            if event.usage.input_tokens is not None:
                input_tokens = _input_tokens(
                    event.usage.input_tokens,
                    event.usage.cache_creation_input_tokens,
                    event.usage.cache_read_input_tokens,
                )
        elif isinstance(event, sdk.RawMessageStopEvent):
            stopped = True
    if not stopped or reason is None:
        raise ModelError("model_unavailable", "the model's stream ended before it finished")
    yield Usage(input_tokens, output_tokens)
    yield Finished(STOP_REASONS.get(reason, reason))


def _input_tokens(uncached: int, cache_written: int | None, cache_read: int | None) -> int:
    """All input tokens, as OpenAI counts them (Anthropic reports cached ones apart)."""
    return uncached + (cache_written or 0) + (cache_read or 0)


def _conversation(
    messages: Sequence[ChatMessage],
) -> tuple[str, list[sdk.MessageParam]]:
    """The system text and the turns: tool results are ``tool_result`` blocks of a user turn,
    and consecutive messages of one role share a turn (parallel tool results must)."""
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    turns: list[tuple[Literal["user", "assistant"], list[sdk.ContentBlockParam]]] = []
    for message in messages:
        if message.role == "system":
            continue
        role: Literal["user", "assistant"] = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    conversation: list[sdk.MessageParam] = []
    for role, blocks in turns:
        if role == "user":
            conversation.append({"role": "user", "content": blocks})
        else:
            conversation.append({"role": "assistant", "content": blocks})
    return system, conversation


def _blocks(message: ChatMessage) -> list[sdk.ContentBlockParam]:
    if message.role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
                "content": message.content or "",
            }
        ]
    blocks: list[sdk.ContentBlockParam] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        )
    return blocks


def _tool(tool: ToolSpec) -> sdk.ToolParam:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}
