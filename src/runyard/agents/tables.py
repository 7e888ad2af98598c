import sqlalchemy as sa

from runyard.db.base import Json, UTCDateTime, metadata

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("system_prompt", sa.Text, nullable=True),
    sa.Column("default_model_id", sa.String(64), nullable=True),
    sa.Column("tools", Json, nullable=False),
    sa.Column("tags", Json, nullable=False),
    sa.Column("max_iterations", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active | archived
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_agents_workspace_created", "workspace_id", "created_at", "id"),
)

#: a conversation with an agent; its id is also the id of its event stream
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("agent_id", sa.String(64), nullable=False),
    sa.Column("title", sa.String(500), nullable=True),
    sa.Column("tags", Json, nullable=False),
    sa.Column("model_id", sa.String(64), nullable=True),
    # the counter message positions are taken from (under the row's lock)
    sa.Column("message_count", sa.Integer, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_sessions_agent_created", "agent_id", "created_at", "id"),
)

#: user, assistant, tool_call, tool_result and system messages of a session, by position
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("session_id", sa.String(64), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),  # the turn it belongs to
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("content", Json, nullable=True),
    # tool calls: {tool_call_id, name, arguments}; results: {tool_call_id, name, is_error};
    # assistant and tool messages: the loop's iteration
    sa.Column("data", Json, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("session_id", "position", name="uq_messages_session_position"),
)
