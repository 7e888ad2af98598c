import sqlalchemy as sa

from runyard.db.base import UTCDateTime, metadata

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    # sha256 of (principal, method, path, key): the scope DESIGN §15 gives a key
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # in_progress | done
    sa.Column("claim_token", sa.String(32), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("content_type", sa.String(200), nullable=True),
    sa.Column("location", sa.String(1000), nullable=True),
    sa.Column("body", sa.LargeBinary, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
)
