import sqlalchemy as sa

from runyard.db.base import Json, UTCDateTime, metadata

runners = sa.Table(
    "runners",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("labels", Json, nullable=False),
    sa.Column("version", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("workspace_id", "name", name="uq_runners_workspace_id_name"),
)
