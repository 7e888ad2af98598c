"""LLM provider and model bodies (DESIGN §9, §15). A provider's ``api_key`` is write-only:
answers say ``api_key_set``, never the key."""

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runyard.llm.types import ProviderType

Status = Literal["active", "disabled"]

MAX_URL_LENGTH = 2000
MAX_KEY_LENGTH = 4096
MAX_CAPABILITIES = 32
MAX_PRICE = 1_000_000.0  # USD per million tokens
MAX_CONTEXT_WINDOW = 100_000_000
CAPABILITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")


def check_base_url(url: str | None) -> str | None:
    """An http(s) URL with a host, and without credentials (they go in ``api_key``)."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number in range)
    except ValueError as exc:
        raise ValueError("not a URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials; give the key as api_key")
    if parts.fragment or any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError("must not have a fragment, spaces or control characters")
    return url


def check_capabilities(capabilities: list[str]) -> list[str]:
    for capability in capabilities:
        if not CAPABILITY.match(capability):
            raise ValueError(
                f"{capability[:64]!r} is not a capability: 1-64 letters, digits, `_.:-`"
            )
    return list(dict.fromkeys(capabilities))


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may be left out, not null")
    return value


NAME_HELP = "Unique in the workspace."
TYPE_HELP = "`openai`, `openai_compatible` (needs `base_url`) or `anthropic`."
URL_HELP = (
    "API base URL (http or https), e.g. `http://localhost:11434/v1`. Required for "
    "`openai_compatible`; for the others it overrides the provider's own."
)
KEY_HELP = "Write-only: stored encrypted, never returned (answers show `api_key_set`)."
DEFAULT_PROVIDER_HELP = "The workspace's default provider; setting it unsets the others'."
STATUS_HELP = "`disabled` ones cannot be called."


class ProviderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description=NAME_HELP)
    provider_type: ProviderType = Field(description=TYPE_HELP)
    base_url: str | None = Field(
        None, min_length=1, max_length=MAX_URL_LENGTH, description=URL_HELP
    )
    api_key: str | None = Field(None, min_length=1, max_length=MAX_KEY_LENGTH, description=KEY_HELP)
    is_default: bool = Field(False, description=DEFAULT_PROVIDER_HELP)
    status: Status = Field("active", description=STATUS_HELP)

    _base_url = field_validator("base_url")(check_base_url)


class ProviderUpdate(BaseModel):
    """Only what is given changes; ``base_url: null`` and ``api_key: null`` clear them."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200, description=NAME_HELP)
    provider_type: ProviderType | None = Field(None, description=TYPE_HELP)
    base_url: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description=URL_HELP + " `null` clears it.",
    )
    api_key: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description=KEY_HELP + " `null` clears it.",
    )
    is_default: bool | None = Field(None, description=DEFAULT_PROVIDER_HELP)
    status: Status | None = Field(None, description=STATUS_HELP)

    _base_url = field_validator("base_url")(check_base_url)
    _required = field_validator("name", "provider_type", "is_default", "status")(_not_null)


class ProviderOut(BaseModel):
    id: str
    object: Literal["llm_provider"]
    workspace_id: str
    name: str
    provider_type: ProviderType
    base_url: str | None
    api_key_set: bool = Field(description="Whether a key is stored (the key is never shown).")
    is_default: bool
    status: Status
    created_at: str
    updated_at: str


class ProviderList(BaseModel):
    data: list[ProviderOut]
    next_cursor: str | None
    has_more: bool


MODEL_ID_HELP = "The provider's name for the model, e.g. `gpt-4o-mini`."
CAPABILITIES_HELP = "Free-form tags such as `chat`, `tools`, `vision`, `json`."
PRICE_HELP = "USD per million tokens, for usage cost (null: unknown)."
DEFAULT_MODEL_HELP = (
    "The workspace's default model (used when an agent or step names none); setting it "
    "unsets the others'."
)


def _price(direction: str) -> Any:
    return Field(
        None, ge=0, le=MAX_PRICE, allow_inf_nan=False, description=f"{direction}: {PRICE_HELP}"
    )


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_id: str = Field(min_length=1, max_length=200, description=MODEL_ID_HELP)
    display_name: str | None = Field(None, min_length=1, max_length=200)
    capabilities: list[str] = Field(
        default_factory=list, max_length=MAX_CAPABILITIES, description=CAPABILITIES_HELP
    )
    context_window: int | None = Field(
        None, ge=1, le=MAX_CONTEXT_WINDOW, description="Tokens the model takes in at most."
    )
    input_price_per_mtok: float | None = _price("Input")
    output_price_per_mtok: float | None = _price("Output")
    is_default: bool = Field(False, description=DEFAULT_MODEL_HELP)
    status: Status = Field("active", description=STATUS_HELP)

    _capabilities = field_validator("capabilities")(check_capabilities)


class ModelCreateWithProvider(ModelCreate):
    provider_id: str = Field(
        min_length=1, max_length=64, description="The provider (`prv_...`) that serves it."
    )


class ModelUpdate(BaseModel):
    """Only what is given changes; ``null`` clears ``display_name``, ``context_window`` and
    the prices."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_id: str | None = Field(None, min_length=1, max_length=200, description=MODEL_ID_HELP)
    display_name: str | None = Field(None, min_length=1, max_length=200)
    capabilities: list[str] | None = Field(
        None, max_length=MAX_CAPABILITIES, description=CAPABILITIES_HELP
    )
    context_window: int | None = Field(None, ge=1, le=MAX_CONTEXT_WINDOW)
    input_price_per_mtok: float | None = _price("Input")
    output_price_per_mtok: float | None = _price("Output")
    is_default: bool | None = Field(None, description=DEFAULT_MODEL_HELP)
    status: Status | None = Field(None, description=STATUS_HELP)

    _required = field_validator("model_id", "capabilities", "is_default", "status")(_not_null)

    @field_validator("capabilities")
    @classmethod
    def _capabilities(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_capabilities(value)


class ModelOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    object: Literal["llm_model"]
    workspace_id: str
    provider_id: str
    model_id: str
    display_name: str | None
    capabilities: list[str]
    context_window: int | None
    input_price_per_mtok: float | None
    output_price_per_mtok: float | None
    is_default: bool
    status: Status
    created_at: str
    updated_at: str


class ModelList(BaseModel):
    data: list[ModelOut]
    next_cursor: str | None
    has_more: bool
