"""The one shape model calls take, whichever provider serves them.

Messages going to a model and what comes back from its stream are normalized here, so the
agent loop and ``llm`` steps never see an SDK's types.
"""

from dataclasses import dataclass, field
from typing import Any, Literal

ProviderType = Literal["openai", "openai_compatible", "anthropic"]


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """Where a call goes. ``api_key`` is the decrypted key: never log or persist it."""

    provider_type: ProviderType
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per million tokens; None when the model's price is not known."""

    input_per_mtok: float | None = None
    output_per_mtok: float | None = None


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model ready to call: the provider's config, the provider-side model name
    (``model_id`` of the llm model, e.g. ``gpt-4o-mini``) and its prices."""

    id: str  # mdl_...
    provider_id: str  # prv_...
    model: str
    config: ProviderConfig
    prices: Prices
    context_window: int | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call: ``parameters`` is a JSON Schema object."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A tool call as it appears in a conversation (an assistant's earlier call)."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the conversation sent to a model.

    ``system``/``user``: ``content``. ``assistant``: ``content`` (may be None) and
    ``tool_calls``. ``tool``: the result of the call ``tool_call_id`` (named ``name``) as
    ``content`` text.
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: tuple[ToolCallRequest, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


# -- what a streamed completion yields, in order ----------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call (its argument fragments joined). ``arguments`` is the parsed
    JSON object, or the raw text when the model sent something that is not a JSON object."""

    id: str
    name: str
    arguments: dict[str, Any] | str


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Finished:
    """The last item: why the model stopped (``stop``, ``tool_calls``, ``length``, ...)."""

    reason: str


StreamItem = TextDelta | ToolCall | Usage | Finished


class ModelError(Exception):
    """A model call that failed for good (after retries). ``code`` becomes the run error:
    ``model_auth_failed``, ``model_rate_limited``, ``model_unavailable``,
    ``model_not_found``, ``model_request_invalid``, ``model_timeout``. The message never
    contains the provider's key."""

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
