import sqlalchemy as sa

from runyard.db.base import Json, UTCDateTime, metadata

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("events", Json, nullable=False),  # patterns: "run.completed", "deploy.*", "*"
    sa.Column("secret", sa.String(200), nullable=False),  # whsec_<base64>, needed to sign
    sa.Column("enabled", sa.Boolean, nullable=False),
    # "settings" for the subscription RUNYARD_WEBHOOK_URL makes (unique: made once, even by
    # replicas starting together); null for the API's
    sa.Column("managed_by", sa.String(32), nullable=True, unique=True),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_webhooks_workspace_created", "workspace_id", "created_at", "id"),
)

#: the outbox: a row per (subscription, event), written in the event's transaction.
#: ``next_attempt_at`` is when the row is due; while an attempt is in flight it is the
#: sender's lease (a compare-and-set claims it); null once delivered or dead.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("webhook_id", sa.String(64), nullable=False),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("event_id", sa.String(64), nullable=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("webhook_message_id", sa.String(64), nullable=False),  # the `webhook-id` header
    sa.Column("redelivery_of", sa.String(64), nullable=True),
    sa.Column("body", sa.Text, nullable=False),  # the exact JSON that is signed and sent
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.String(1000), nullable=True),
    sa.Column("last_latency_ms", sa.Integer, nullable=True),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=True, index=True),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_webhook_deliveries_webhook_created", "webhook_id", "created_at", "id"),
)
