"""All configuration, read from ``RUNYARD_*`` environment variables.

``docs/configuration.md`` is generated from this model (``python -m runyard.cli.docgen``);
a test keeps the two in step.
"""

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

GIB = 1024**3


class TierLimits(BaseModel):
    """What a workspace of one tier may use (``null``: no limit)."""

    runs_per_month: int | None = Field(None, ge=0)
    concurrent_runs: int | None = Field(None, ge=1)
    artifact_bytes: int | None = Field(None, ge=0)


def default_tiers() -> dict[str, TierLimits]:
    return {
        "free": TierLimits(runs_per_month=10, concurrent_runs=5, artifact_bytes=GIB),
        "pro": TierLimits(runs_per_month=1000, concurrent_runs=50, artifact_bytes=100 * GIB),
        "unlimited": TierLimits(),
    }


class Settings(BaseSettings):
    """Runyard server settings. Every field is ``RUNYARD_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="RUNYARD_", extra="ignore")

    data_dir: Path = Field(
        Path(".runyard"),
        description="Directory for the embedded SQLite database, blobs and the server secret.",
    )
    database_url: str | None = Field(
        None,
        description=(
            "Database URL: `sqlite:///path.db` (also `sqlite+aiosqlite://`) or "
            "`postgresql+asyncpg://user@host/db`. Default: SQLite at `<data_dir>/runyard.db`."
        ),
    )
    database_schema: str | None = Field(
        None,
        description="PostgreSQL schema holding Runyard's tables (created if missing). "
        "Default: the connection's `search_path`.",
    )
    database_pool_size: int = Field(10, ge=1, description="Connections kept in the pool.")
    broker_url: str = Field(
        "memory://",
        description="Live fan-out broker: `memory://` (in-process, one server) or "
        "`redis://host:6379/0` (shared by replicas).",
    )
    blobs_url: str | None = Field(
        None,
        description="Artifact storage: `file:///path` (default: `<data_dir>/blobs`) or "
        "`s3://bucket/prefix?endpoint_url=...&region=...` (credentials from the AWS environment).",
    )
    artifact_max_bytes: int = Field(
        100 * 1024 * 1024, ge=1, description="Largest artifact a runner may upload (413 beyond)."
    )
    bundle_max_bytes: int = Field(
        50 * 1024 * 1024, ge=1, description="Largest pipeline bundle upload (413 beyond)."
    )
    bundle_max_unpacked_bytes: int = Field(
        500 * 1024 * 1024,
        ge=1,
        description="Most bytes a pipeline bundle may unpack to (413 beyond).",
    )
    build_tool: Literal["auto", "uv", "pip"] = Field(
        "auto",
        description="What builds pipeline environments: `uv` (`uv venv` + `uv pip install`), "
        "`pip` (`python -m venv` + pip), or `auto`: uv when it is on the `PATH`, else pip.",
    )
    build_pythons: list[str] = Field(
        default_factory=list,
        description="Interpreters environments may use, as paths or command names (a JSON "
        "list). Default: the server's own and every `python3.N` on the `PATH`.",
    )
    build_package_dirs: list[Path] = Field(
        default_factory=list,
        description="Server directories whose subdirectories an environment may name in "
        "`packages` by absolute path (a JSON list). Default: none; only bundle paths.",
    )
    build_timeout_seconds: float = Field(
        1800, gt=0, description="Longest a build may take before it fails."
    )
    build_keep_environments: int = Field(
        20, ge=1, description="Most ready environments kept; the least recently used go first."
    )
    build_max_age_days: float = Field(
        30, gt=0, description="Environments unused for longer are deleted after the next build."
    )
    document_max_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1,
        description="Largest document (text, Markdown, JSON or PDF) accepted for extraction "
        "(413 beyond).",
    )
    host: str = Field("127.0.0.1", description="Address `runyard serve` binds to.")
    port: int = Field(8000, ge=0, le=65535, description="Port `runyard serve` binds to.")
    public_url: str | None = Field(
        None,
        description="Base URL under which clients and runners reach this server. "
        "Default: `http://<host>:<port>`.",
    )
    insecure: bool = Field(
        False,
        description="Allow binding a non-loopback address while open mode (no API keys) is on.",
    )
    worker_enabled: bool = Field(
        True,
        description="Run the embedded worker, which executes `steps` pipelines and agent "
        "turns, inside the server (reported as `runner_mode`).",
    )
    worker_concurrency: int = Field(
        4, ge=1, le=256, description="Runs the embedded worker executes at once."
    )
    model_timeout_seconds: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="How long a model call may wait on its provider: to connect, and for each "
        "part of the streamed answer.",
    )
    model_max_retries: int = Field(
        3,
        ge=0,
        le=10,
        description="Retries of a model call answered 429, 5xx or not at all (honouring "
        "`Retry-After`, else backing off exponentially) before the turn or step fails.",
    )
    model_retry_base_seconds: float = Field(
        0.5, gt=0, le=60, description="First backoff between model call retries; it doubles."
    )
    agent_tools_allow_private: bool = Field(
        False,
        description="Let agents' HTTP and MCP tools reach hosts that are or resolve to private, "
        "loopback, link-local or other non-public addresses (refused by default: SSRF). Set "
        "it to use tools served on this machine or your network.",
    )
    agent_tool_timeout_seconds: float = Field(
        30.0, gt=0, le=3600, description="How long one tool call of an agent may take."
    )
    push_retry_base_seconds: float = Field(
        1.0,
        gt=0,
        description="First backoff between job deliveries to an `http` executor; it doubles "
        "over 5 retries (about 31 s in all) before the run fails with `trigger_failed`.",
    )
    log_level: str = Field("info", description="Log level of the server: debug, info, warning.")
    secret_key: SecretStr | None = Field(
        None,
        description="Key that signs runner tokens (HS256). Default: generated on first start "
        "into `<data_dir>/secret.key`. Replicas must share one.",
    )
    secrets_key: SecretStr | None = Field(
        None,
        description="Fernet key (32 url-safe base64-encoded bytes, e.g. from "
        "`cryptography.fernet.Fernet.generate_key()`) that encrypts secrets at rest, such as "
        "LLM providers' API keys. Default: generated on first start into "
        "`<data_dir>/secrets.key` (mode 0600). All replicas must share it, and losing it "
        "loses the stored secrets.",
    )
    lease_seconds: int = Field(
        30,
        ge=1,
        le=3600,
        description="How long a runner's lease lasts without a heartbeat (a pipeline's "
        "`lease_seconds` overrides it). Runners heartbeat every third of it.",
    )
    cancel_deadline_seconds: int = Field(
        30,
        ge=1,
        description="After a cancel of a running run, how long the runner has to acknowledge "
        "before the run is `cancelled` regardless.",
    )
    runner_token_hours: int = Field(
        24, ge=1, le=24 * 30, description="Lifetime of a runner token (refreshable)."
    )
    max_request_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted (by `Content-Length`); larger ones get 413.",
    )
    sse_keepalive_seconds: float = Field(
        10.0, gt=0, description="Seconds between `: keep-alive` comments on idle SSE streams."
    )
    sse_retry_ms: int = Field(
        2000, ge=0, description="Reconnect delay suggested to SSE clients (`retry:`)."
    )
    sse_batch_window_ms: float = Field(
        50.0,
        ge=0,
        description="An SSE stream writes at most once per this window, each write with all "
        "that arrived: fewer, larger writes when thousands of clients watch a busy run. The "
        "first event after a quiet window is written at once.",
    )
    sse_queue_size: int = Field(
        4096,
        ge=1,
        description="Live events buffered per SSE subscriber before it falls back to the database.",
    )
    sse_max_resyncs: int = Field(
        20,
        ge=0,
        description="Database catch-ups a lagging SSE subscriber may need per stream before the "
        "server sends `stream.reset` and closes it.",
    )
    session_hours: float = Field(
        12.0,
        gt=0,
        le=24 * 30,
        description="Lifetime of a dashboard session (`POST /v1/auth/login`), never longer than "
        "its API key's; it does not slide.",
    )
    session_cookie_secure: bool | None = Field(
        None,
        description="Mark the session cookie `Secure`. Default: when the login came over https "
        "or `RUNYARD_PUBLIC_URL` is https.",
    )
    rate_limit_per_second: float | None = Field(
        None,
        gt=0,
        description="Requests per second each API key (a session counts as its key; a runner "
        "token as its run; open mode as the client address) may make to each server process; "
        "beyond it, 429 with `Retry-After`. Default: no limit.",
    )
    rate_limit_burst: int | None = Field(
        None,
        ge=1,
        description="Requests a key may make at once before the rate applies (the bucket's "
        "size). Default: one second's worth of the rate, at least 1.",
    )

    tiers: dict[str, TierLimits] = Field(
        default_factory=default_tiers,
        description="Tiers as JSON: name → `{runs_per_month, concurrent_runs, artifact_bytes}` "
        "(null: no limit). Runs per calendar month (UTC) are admitted atomically (402 beyond); "
        "runs beyond `concurrent_runs` wait `queued`. Must include `unlimited` (the default "
        "workspace's tier) and the default tier.",
    )
    default_tier: str = Field("free", description="Tier of new workspaces.")
    metrics_require_auth: bool = Field(
        False, description="Make `GET /metrics` need an API key or session (any role)."
    )
    tier_webhook_secret: SecretStr | None = Field(
        None,
        description="Lets a billing system change a workspace's tier without an API key: "
        "`PATCH /v1/workspaces/{id}/tier` with `X-Webhook-Secret` equal to it (16 characters "
        "or more).",
    )

    webhook_url: str | None = Field(
        None,
        description="On start, subscribe the default workspace to every `run.*` event at this "
        "URL (made once; replicas and restarts do not duplicate it).",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="Signing secret (`whsec_<base64>`) of the `RUNYARD_WEBHOOK_URL` "
        "subscription. Default: generated when the subscription is made, and logged once.",
    )
    webhook_allow_private: bool = Field(
        False,
        description="Allow webhook URLs whose host is or resolves to a private, loopback, "
        "link-local, multicast, reserved or unspecified address (refused by default: SSRF).",
    )
    webhook_retry_base_seconds: float = Field(
        5.0,
        gt=0,
        description="Wait before the first retry of a failed webhook delivery; it doubles per "
        "attempt, capped at an hour.",
    )
    webhook_retention_days: int = Field(
        30,
        ge=1,
        le=3650,
        description="Days delivered and dead webhook deliveries are kept in the delivery log.",
    )
    webhook_max_attempts: int = Field(
        34,
        ge=1,
        le=1000,
        description="Attempts per webhook delivery, the first included, before it is `dead` "
        "(34 with the 5 s base: the last about 24 h after the first).",
    )
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="How long one webhook delivery attempt may take."
    )
    webhook_concurrency: int = Field(
        16, ge=1, le=1000, description="Webhook deliveries each server process sends at once."
    )

    @model_validator(mode="after")
    def _tiers_known(self) -> Self:
        secret = self.tier_webhook_secret
        if secret is not None and len(secret.get_secret_value()) < 16:
            raise ValueError("RUNYARD_TIER_WEBHOOK_SECRET must be at least 16 characters")
        for needed in ("unlimited", self.default_tier):
            if needed not in self.tiers:
                raise ValueError(f"RUNYARD_TIERS must define the tier {needed!r}")
        return self

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'runyard.db').resolve()}"

    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
