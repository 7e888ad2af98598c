"""Webhook and delivery bodies (DESIGN §11, §15)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runyard.events.schemas import EVENT_TYPE_PATTERN, MAX_TYPE_LENGTH
from runyard.webhooks import signing
from runyard.webhooks.targets import MAX_URL_LENGTH

DeliveryStatus = Literal["pending", "retrying", "delivered", "dead"]
MAX_PATTERNS = 100


def check_patterns(patterns: list[str]) -> list[str]:
    """Event types, ``prefix.*`` (``deploy.*`` matches ``deploy.started``) or ``*``; each once."""
    for pattern in patterns:
        base = pattern.removesuffix(".*")
        if pattern != "*" and not (len(base) <= MAX_TYPE_LENGTH and EVENT_TYPE_PATTERN.match(base)):
            raise ValueError(f"{pattern!r} is not an event type, `prefix.*` or `*`")
    return list(dict.fromkeys(patterns))


def check_secret(secret: str | None) -> str | None:
    if secret is not None:
        signing.key_of(secret)
    return secret


URL_HELP = (
    "http(s) URL that receives the POSTs. Hosts that are or resolve to private, loopback, "
    "link-local, multicast, reserved or unspecified addresses are refused unless "
    "`RUNYARD_WEBHOOK_ALLOW_PRIVATE=true`."
)
EVENTS_HELP = (
    "Event types to deliver: exact (`run.completed`), a prefix (`deploy.*`), or `*` for every "
    "event of the workspace's runs."
)


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH, description=URL_HELP)
    events: list[str] = Field(min_length=1, max_length=MAX_PATTERNS, description=EVENTS_HELP)
    secret: str | None = Field(
        None,
        description="Standard Webhooks signing secret: `whsec_` and the base64 of 24 to 64 "
        "bytes. Generated when absent.",
    )

    _patterns = field_validator("events")(check_patterns)
    _secret = field_validator("secret")(check_secret)


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, min_length=1, max_length=MAX_URL_LENGTH, description=URL_HELP)
    events: list[str] | None = Field(
        None, min_length=1, max_length=MAX_PATTERNS, description=EVENTS_HELP
    )
    enabled: bool | None = Field(
        None, description="A disabled webhook gets no new deliveries; waiting ones wait."
    )
    secret: str | None = Field(
        None, description="A new signing secret (`whsec_...`), used from the next attempt on."
    )

    @field_validator("events")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_patterns(value)

    _secret = field_validator("secret")(check_secret)


class WebhookOut(BaseModel):
    id: str
    object: Literal["webhook"]
    workspace_id: str
    url: str
    events: list[str]
    enabled: bool
    created_by: str
    created_at: str
    updated_at: str


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret (`whsec_...`), shown only in this answer.")


class WebhookList(BaseModel):
    data: list[WebhookOut]
    next_cursor: str | None
    has_more: bool


class DeliveryOut(BaseModel):
    id: str
    object: Literal["webhook_delivery"]
    webhook_id: str
    event: str = Field(description="The event's type.")
    event_id: str | None
    run_id: str | None
    webhook_message_id: str = Field(
        description="The `webhook-id` header: the same for every attempt and redelivery."
    )
    redelivery_of: str | None = Field(description="The delivery this one redelivers.")
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_latency_ms: int | None
    next_attempt_at: str | None = Field(
        description="When the next attempt is due (while one is in flight: when it is given "
        "up as lost); null once delivered or dead."
    )
    delivered_at: str | None
    created_at: str


class DeliveryList(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None
    has_more: bool
