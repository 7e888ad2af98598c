import sqlalchemy as sa

from runyard.db.base import Json, UTCDateTime, metadata

#: one row per stream; ``last_sequence`` is the counter that sequences are taken from
event_streams = sa.Table(
    "event_streams",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("last_sequence", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # a stream whose every event is also appended to this one (a turn run's: its session's)
    sa.Column("mirror_id", sa.String(64), nullable=True),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("stream_id", sa.String(64), primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True),
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("time", UTCDateTime(), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("step", sa.String(200), nullable=True),
    sa.Column("attempt", sa.Integer, nullable=True),
    sa.Column("data", Json, nullable=False),
)
