"""One way to call a model, whichever provider serves it (DESIGN §9).

``stream_chat`` streams a chat completion as ``StreamItem``s through the official SDKs
(``openai_client`` for ``openai`` and ``openai_compatible``, ``anthropic_client`` for
``anthropic``). The SDKs' own retries are off: this module retries, boundedly, and turns what
finally fails into a ``ModelError`` whose message never carries the provider's key.

The SDKs are imported on the first call (together they take seconds to import).
"""

import asyncio
import email.utils
import functools
import json
import logging
import ssl
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal, Protocol

from runyard.llm.types import (
    ChatMessage,
    ModelError,
    Prices,
    ProviderType,
    ResolvedModel,
    StreamItem,
    ToolSpec,
    Usage,
)

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({408, 409, 429})
DETAIL_LIMIT = 300


@dataclass(frozen=True, slots=True)
class Failure:
    """An SDK error as the retry loop sees it. ``status`` is the HTTP status (or the one an
    in-stream error event stands for); ``detail`` is the provider's own message, if any."""

    kind: Literal["status", "connection", "timeout", "other"]
    status: int | None = None
    headers: Mapping[str, str] | None = None
    detail: str = ""

    @property
    def retryable(self) -> bool:
        if self.kind in ("connection", "timeout"):
            return True
        return self.status is not None and (self.status in RETRIED_STATUSES or self.status >= 500)


class Provider(Protocol):
    """What ``openai_client`` and ``anthropic_client`` provide."""

    def stream(
        self,
        model: ResolvedModel,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec],
        *,
        temperature: float | None,
        max_tokens: int | None,
        timeout_seconds: float,
        response_format: dict[str, Any] | None = None,
    ) -> AsyncGenerator[StreamItem, None]: ...

    def failure(self, exc: Exception) -> Failure | None: ...


async def stream_chat(
    model: ResolvedModel,
    messages: Sequence[ChatMessage],
    *,
    tools: Sequence[ToolSpec] = (),
    temperature: float | None = None,
    max_tokens: int | None = None,
    timeout_seconds: float = 120.0,
    max_retries: int = 3,
    retry_base_seconds: float = 0.5,
    max_retry_after_seconds: float = 30.0,
    response_format: dict[str, Any] | None = None,
) -> AsyncGenerator[StreamItem, None]:
    """Stream one completion: ``TextDelta``s, then complete ``ToolCall``s, one ``Usage`` and
    a ``Finished``. ``response_format`` (OpenAI's JSON mode or JSON schema) goes to providers
    that take one; others get only the prompt's instructions. ``timeout_seconds`` bounds
    each wait on the provider (connecting, each read), not the whole stream.

    Failures before the first item are retried up to ``max_retries`` times (429, 408, 409,
    5xx, connection errors, timeouts), after ``Retry-After`` or an exponential backoff from
    ``retry_base_seconds``, both capped at ``max_retry_after_seconds``. A failure after an
    item was yielded is raised at once. Raises ``ModelError``.

    Leaving early: ``aclose()`` it (or cancel the task) and the HTTP stream closes at once.
    """
    provider = _provider(model.config.provider_type)
    retries = 0
    while True:
        yielded = False
        try:
            items = provider.stream(
                model,
                messages,
                tools,
                temperature=temperature,
                max_tokens=max_tokens,
                timeout_seconds=timeout_seconds,
                response_format=response_format,
            )
            async with aclosing(items):
                async for item in items:
                    yielded = True
                    yield item
            return
        except ModelError:
            raise
        except Exception as exc:
            failure = provider.failure(exc)
            if failure is None:
                raise
        # Raised out here, so the SDK's exception (and its text) is not chained to ours.
        if yielded or not failure.retryable or retries >= max_retries:
            raise model_error(failure, model, retries=retries, timeout_seconds=timeout_seconds)
        after = _retry_after(failure.headers)
        backoff = retry_base_seconds * 2**retries
        delay = min(backoff if after is None else after, max_retry_after_seconds)
        retries += 1
        log.info(
            "model call to %s failed (%s); retry %d of %d in %.2f s",
            model.model,
            failure.status or failure.kind,
            retries,
            max_retries,
            delay,
        )
        await asyncio.sleep(delay)


def cost_usd(usage: Usage, prices: Prices) -> float | None:
    """What ``usage`` cost in USD; None when neither price is known (a missing one counts as
    0 when the other is known)."""
    if prices.input_per_mtok is None and prices.output_per_mtok is None:
        return None
    total = usage.input_tokens * (prices.input_per_mtok or 0.0) + usage.output_tokens * (
        prices.output_per_mtok or 0.0
    )
    return round(total / 1_000_000, 10)


def model_error(
    failure: Failure, model: ResolvedModel, *, retries: int = 0, timeout_seconds: float = 0
) -> ModelError:
    """The ``ModelError`` for a failure, its message short and free of the provider's key."""
    status = failure.status
    code, message = "model_unavailable", "the model provider failed"
    if failure.kind == "timeout":
        code, message = (
            "model_timeout",
            f"no answer from the model provider in {timeout_seconds:g} s",
        )
    elif status == 408:
        code, message = "model_timeout", "the model provider timed out the request"
    elif failure.kind == "connection":
        message = "could not connect to the model provider"
    elif status in (401, 403):
        code, message = "model_auth_failed", "the model provider refused the API key"
    elif status == 429:
        code, message = "model_rate_limited", "the model provider is rate limiting requests"
    elif status == 404:
        code, message = "model_not_found", f"the model provider does not know model {model.model!r}"
    elif status == 409:
        message = "the model provider reported a conflict"
    elif status is not None and 400 <= status < 500:
        code, message = "model_request_invalid", "the model provider rejected the request"
    if status is not None:
        message += f" ({status})"
    if retries:
        message += f" after {retries} {'retry' if retries == 1 else 'retries'}"
    # The provider's text may echo (part of) the key for auth errors: never quote it there.
    if failure.detail and code != "model_auth_failed":
        message += f": {redact(failure.detail, model.config.api_key)}"
    return ModelError(code, message, status=status)


def redact(text: str, secret: str | None) -> str:
    """``text`` without ``secret``, cut to a readable length."""
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 1] + "…"


def provider_message(body: object) -> str:
    """The human message in a provider's error body (``{"error": {"message": ...}}``, the
    error object itself, or plain text)."""
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
        return ""
    return body.strip() if isinstance(body, str) else ""


def parse_arguments(raw: str) -> dict[str, Any] | str:
    """A tool call's joined argument text: the JSON object, or the raw text when it is not
    one (nothing at all counts as no arguments)."""
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw
    return parsed if isinstance(parsed, dict) else raw


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every call: loading the CA bundle costs tens of milliseconds."""
    import httpx2

    return httpx2.create_ssl_context()


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date)."""
    if not headers:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(float(milliseconds) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - time.time(), 0.0)


def _provider(provider_type: ProviderType) -> Provider:
    if provider_type == "anthropic":
        from runyard.llm import anthropic_client

        return anthropic_client
    from runyard.llm import openai_client

    return openai_client
