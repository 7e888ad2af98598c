"""The ``llm`` step kind (DESIGN §7): a rendered prompt → a model → text, or JSON checked
against an optional schema, with streamed ``text.delta`` events, usage and cost.

``with``: ``prompt`` (required; templates are rendered before the step runs), ``system``,
``model_id`` (an ``mdl_`` id; the workspace's default model when absent), ``output_schema``
(a JSON Schema: the answer must be a JSON value that matches it), ``json`` (true: the answer
must be JSON, without a schema), ``temperature``, ``max_tokens``.
"""

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from runyard.events.service import NewEvent
from runyard.llm.client import cost_usd, stream_chat
from runyard.llm.types import ChatMessage, ModelError, ResolvedModel, TextDelta, Usage
from runyard.problems import DomainError
from runyard.worker.steps import StepContext, StepFailed

_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*)\n\s*```\s*$", re.DOTALL)


class Models(Protocol):
    async def resolve(self, workspace_id: str, model_id: str | None) -> ResolvedModel: ...


@dataclass(frozen=True)
class ModelCalls:
    """How ``llm`` steps reach models: the workspace's models and the call settings."""

    models: Models
    timeout_seconds: float = 120.0
    max_retries: int = 3
    retry_base_seconds: float = 0.5


#: adds a model call's usage (``input_tokens``, ``output_tokens``, ``cost_usd``) to the run
AddUsage = Callable[[dict[str, Any]], Awaitable[None]]


async def run_llm(
    options: dict[str, Any],
    ctx: StepContext,
    calls: ModelCalls,
    workspace_id: str,
    add_usage: AddUsage,
) -> Any:
    """The step's output. The call's usage is added to the run as soon as the answer is in,
    so an answer that fails its checks still counts what it cost."""
    prompt = options.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise StepFailed("invalid_step", "an llm step needs `with.prompt`: a non-empty string")
    schema = options.get("output_schema")
    validator = schema_validator(schema) if schema is not None else None
    wants_json = validator is not None or bool(options.get("json"))
    try:
        model = await calls.models.resolve(workspace_id, options.get("model_id"))
    except DomainError as exc:
        raise StepFailed(exc.code, exc.detail) from exc
    messages = []
    system = options.get("system")
    if wants_json:
        rule = "Answer with JSON only, no prose and no code fence."
        if schema is not None:
            rule += " It must match this JSON Schema: " + orjson.dumps(schema).decode()
        system = f"{system}\n\n{rule}" if system else rule
    if system:
        messages.append(ChatMessage(role="system", content=str(system)))
    messages.append(ChatMessage(role="user", content=prompt))
    text, usage = await stream_text(
        model,
        messages,
        ctx,
        calls,
        temperature=_number(options.get("temperature")),
        max_tokens=_integer(options.get("max_tokens")),
    )
    await add_usage(usage)
    if not wants_json:
        return {"text": text, "model": model.model}
    return parse_json(text, validator)


async def stream_text(
    model: ResolvedModel,
    messages: list[ChatMessage],
    ctx: StepContext,
    calls: ModelCalls,
    *,
    temperature: float | None,
    max_tokens: int | None,
    response_format: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """One model call streamed into the step's ``text.delta`` events, then a ``usage`` event:
    the answer's text and its usage (``input_tokens``, ``output_tokens``, ``cost_usd``)."""
    parts: list[str] = []
    usage: dict[str, Any] = {"input_tokens": 0, "output_tokens": 0, "cost_usd": None}
    try:
        async for item in stream_chat(
            model,
            messages,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout_seconds=calls.timeout_seconds,
            max_retries=calls.max_retries,
            retry_base_seconds=calls.retry_base_seconds,
            response_format=response_format,
        ):
            if isinstance(item, TextDelta):
                parts.append(item.text)
                ctx.buffer.put(NewEvent("text.delta", {"delta": item.text}, step=ctx.step))
            elif isinstance(item, Usage):
                usage = {
                    "input_tokens": item.input_tokens,
                    "output_tokens": item.output_tokens,
                    "cost_usd": cost_usd(item, model.prices),
                }
    except ModelError as exc:
        raise StepFailed(exc.code, exc.message) from exc
    ctx.buffer.put(NewEvent("usage", {**usage, "model": model.model}, step=ctx.step))
    return "".join(parts), usage


def parse_json(text: str, validator: Draft202012Validator | None) -> Any:
    fenced = _FENCE.match(text)
    try:
        value = orjson.loads(fenced.group(1) if fenced else text)
    except orjson.JSONDecodeError as exc:
        raise StepFailed(
            "llm_output_invalid", f"the model's answer is not JSON: {text[:200]!r}"
        ) from exc
    if validator is not None:
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
            raise StepFailed(
                "llm_output_invalid",
                f"the model's answer does not match output_schema at {where}: {errors[0].message}",
            )
    return value


def schema_validator(schema: Any) -> Draft202012Validator:
    if not isinstance(schema, dict):
        raise StepFailed("invalid_step", "`with.output_schema` must be a JSON Schema object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise StepFailed("invalid_step", f"`with.output_schema`: {exc.message}") from exc
    return Draft202012Validator(schema)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
