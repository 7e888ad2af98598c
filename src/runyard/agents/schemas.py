"""Agent, session and message bodies and resources (DESIGN §9, §15)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runyard.agents.tool_declarations import ToolList
from runyard.clock import isoformat

MAX_TEXT = 100_000
MAX_TAGS = 50
Multitask = Literal["reject", "enqueue", "interrupt"]
SessionStatus = Literal["idle", "running", "failed"]


class AgentFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(None, max_length=10_000)
    system_prompt: str | None = Field(None, max_length=MAX_TEXT)
    default_model_id: str | None = Field(
        None,
        max_length=64,
        description="An llm model id (`mdl_…`); the workspace default model when null.",
    )
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    max_iterations: int = Field(
        10, ge=1, le=100, description="Model calls one turn may make before it stops."
    )


class AgentCreate(AgentFields):
    name: str = Field(min_length=1, max_length=200)
    tools: ToolList = Field(default_factory=list)


class AgentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=10_000)
    system_prompt: str | None = Field(None, max_length=MAX_TEXT)
    default_model_id: str | None = Field(None, max_length=64)
    tools: ToolList | None = None
    tags: list[str] | None = Field(None, max_length=MAX_TAGS)
    max_iterations: int | None = Field(None, ge=1, le=100)
    status: Literal["active", "archived"] | None = None


class AgentOut(BaseModel):
    id: str
    object: Literal["agent"]
    workspace_id: str
    name: str
    description: str | None
    system_prompt: str | None
    default_model_id: str | None
    tools: list[dict[str, Any]]
    tags: list[str]
    max_iterations: int
    status: Literal["active", "archived"]
    created_by: str
    created_at: str
    updated_at: str


class AgentList(BaseModel):
    data: list[AgentOut]
    next_cursor: str | None
    has_more: bool


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=500)
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    model_id: str | None = Field(
        None, max_length=64, description="Overrides the agent's model for this session."
    )


class SessionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=500)
    tags: list[str] | None = Field(None, max_length=MAX_TAGS)
    model_id: str | None = Field(None, max_length=64)


class SessionOut(BaseModel):
    id: str
    object: Literal["session"]
    workspace_id: str
    agent_id: str
    title: str | None
    tags: list[str]
    model_id: str | None
    status: SessionStatus
    message_count: int
    created_by: str
    created_at: str
    updated_at: str
    links: dict[str, str]


class SessionList(BaseModel):
    data: list[SessionOut]
    next_cursor: str | None
    has_more: bool


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user"] = "user"
    content: str = Field(min_length=1, max_length=MAX_TEXT)
    multitask: Multitask = Field(
        "reject",
        description="When a turn is still running: `reject` (409), `enqueue` (this turn runs "
        "after the ones before it), or `interrupt` (cancel them, then run this one).",
    )


class MessageOut(BaseModel):
    id: str
    object: Literal["message"]
    session_id: str
    position: int
    run_id: str | None
    role: Literal["user", "assistant", "tool_call", "tool_result", "system"]
    content: Any
    tool_call_id: str | None = None
    name: str | None = None
    arguments: Any = None
    is_error: bool | None = None
    created_at: str


class MessagePosted(BaseModel):
    message: MessageOut
    run_id: str


class MessageList(BaseModel):
    data: list[MessageOut]
    next_cursor: str | None
    has_more: bool


#: what a tool's header values read as: they may be credentials, so they are write-only
HIDDEN = "***"


def shown_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tools as answers show them: header names, not their values."""
    return [
        {**tool, "headers": dict.fromkeys(tool["headers"], HIDDEN)} if tool.get("headers") else tool
        for tool in tools
    ]


def keep_hidden_headers(
    new: list[dict[str, Any]], old: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A tool list sent back as it was read: a header whose value is :data:`HIDDEN` keeps the
    stored value of the same tool (same type, name and url)."""

    def key(tool: dict[str, Any]) -> tuple[Any, ...]:
        return tool.get("type"), tool.get("name"), tool.get("url")

    stored = {key(tool): tool.get("headers") or {} for tool in old}
    out = []
    for tool in new:
        headers = tool.get("headers") or {}
        if HIDDEN in headers.values():
            before = stored.get(key(tool), {})
            headers = {k: before.get(k, v) if v == HIDDEN else v for k, v in headers.items()}
            tool = {**tool, "headers": headers}
        out.append(tool)
    return out


def agent_resource(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "agent",
        "workspace_id": row["workspace_id"],
        "name": row["name"],
        "description": row["description"],
        "system_prompt": row["system_prompt"],
        "default_model_id": row["default_model_id"],
        "tools": shown_tools(row["tools"]),
        "tags": row["tags"],
        "max_iterations": row["max_iterations"],
        "status": row["status"],
        "created_by": row["created_by"],
        "created_at": isoformat(row["created_at"]),
        "updated_at": isoformat(row["updated_at"]),
    }


def session_status(turn_status: str | None) -> str:
    """idle (no turn, or the last one ended well), running (a turn is not finished), failed
    (the last turn failed)."""
    if turn_status is None or turn_status in ("completed", "cancelled", "rejected"):
        return "idle"
    if turn_status == "failed":
        return "failed"
    return "running"


def session_resource(row: dict[str, Any], turn_status: str | None) -> dict[str, Any]:
    base = f"/v1/agents/{row['agent_id']}/sessions/{row['id']}"
    return {
        "id": row["id"],
        "object": "session",
        "workspace_id": row["workspace_id"],
        "agent_id": row["agent_id"],
        "title": row["title"],
        "tags": row["tags"],
        "model_id": row["model_id"],
        "status": session_status(turn_status),
        "message_count": row["message_count"],
        "created_by": row["created_by"],
        "created_at": isoformat(row["created_at"]),
        "updated_at": isoformat(row["updated_at"]),
        "links": {
            "self": base,
            "messages": f"{base}/messages",
            "events": f"{base}/events",
            "runs": f"/v1/runs?session_id={row['id']}",
        },
    }


def message_resource(row: dict[str, Any]) -> dict[str, Any]:
    data = row["data"] or {}
    out = {
        "id": row["id"],
        "object": "message",
        "session_id": row["session_id"],
        "position": row["position"],
        "run_id": row["run_id"],
        "role": row["role"],
        "content": row["content"],
        "created_at": isoformat(row["created_at"]),
    }
    for key in ("tool_call_id", "name", "arguments", "is_error"):
        if key in data:
            out[key] = data[key]
    return out
