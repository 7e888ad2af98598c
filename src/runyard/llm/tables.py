import sqlalchemy as sa

from runyard.db.base import Json, UTCDateTime, metadata

llm_providers = sa.Table(
    "llm_providers",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("provider_type", sa.String(32), nullable=False),
    sa.Column("base_url", sa.String(2000), nullable=True),
    # Fernet token of the key (runyard.llm.secrets); the plaintext is never stored
    sa.Column("api_key_encrypted", sa.Text, nullable=True),
    sa.Column("is_default", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("workspace_id", "name", name="uq_llm_providers_workspace_id_name"),
    sa.Index("ix_llm_providers_workspace_created", "workspace_id", "created_at", "id"),
    # one default per workspace, kept by the database too (two replicas setting defaults at
    # once: the second waits for the first and retries)
    sa.Index(
        "uq_llm_providers_workspace_default",
        "workspace_id",
        unique=True,
        sqlite_where=sa.text("is_default"),
        postgresql_where=sa.text("is_default"),
    ),
)

llm_models = sa.Table(
    "llm_models",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("provider_id", sa.String(64), nullable=False),
    sa.Column("model_id", sa.String(200), nullable=False),  # the provider's name for it
    sa.Column("display_name", sa.String(200), nullable=True),
    sa.Column("capabilities", Json, nullable=False),  # ["chat", "tools", ...]
    sa.Column("context_window", sa.Integer, nullable=True),
    sa.Column("input_price_per_mtok", sa.Float, nullable=True),  # USD per million tokens
    sa.Column("output_price_per_mtok", sa.Float, nullable=True),
    sa.Column("is_default", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_llm_models_workspace_created", "workspace_id", "created_at", "id"),
    sa.Index("ix_llm_models_provider_created", "provider_id", "created_at", "id"),
    sa.Index(
        "uq_llm_models_workspace_default",
        "workspace_id",
        unique=True,
        sqlite_where=sa.text("is_default"),
        postgresql_where=sa.text("is_default"),
    ),
)
