import sqlalchemy as sa

from runyard.db.base import Json, UTCDateTime, metadata

pipelines = sa.Table(
    "pipelines",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("spec", Json, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("workspace_id", "name", name="uq_pipelines_workspace_id_name"),
)

pipeline_versions = sa.Table(
    "pipeline_versions",
    metadata,
    sa.Column("pipeline_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("spec", Json, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

#: a pipeline's current bundle of step code (DESIGN §7); its bytes are in the blob store
pipeline_bundles = sa.Table(
    "pipeline_bundles",
    metadata,
    sa.Column("pipeline_id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("unpacked_bytes", sa.BigInteger, nullable=False),
    sa.Column("format", sa.String(8), nullable=False),  # zip | tar | tar.gz
    sa.Column("files", Json, nullable=False),
    sa.Column("storage_key", sa.String(500), nullable=False),
    sa.Column("uploaded_by", sa.String(200), nullable=False),
    sa.Column("uploaded_at", UTCDateTime(), nullable=False),
)
