"""A session's stored messages as the conversation a model is sent."""

from typing import Any

import orjson

from runyard.llm.types import ChatMessage, ToolCallRequest


def tool_text(content: Any) -> str:
    """A tool result as the text a model reads."""
    return content if isinstance(content, str) else orjson.dumps(content).decode()


def call_arguments(arguments: Any) -> dict[str, Any]:
    """A call's arguments as the object providers take back (raw text stays visible)."""
    return arguments if isinstance(arguments, dict) else {"input": arguments}


def conversation(system_prompt: str | None, rows: list[dict[str, Any]]) -> list[ChatMessage]:
    """``rows`` (messages in turn order) as chat messages. An assistant's text and the tool
    calls of the same model response become one assistant message; a call without its result
    (a turn that ended midway) and a result without its call are left out, since providers
    refuse either."""
    calls = {r["data"]["tool_call_id"] for r in rows if r["role"] == "tool_call"}
    results = {r["data"]["tool_call_id"] for r in rows if r["role"] == "tool_result"}
    out: list[ChatMessage] = []
    if system_prompt:
        out.append(ChatMessage(role="system", content=system_prompt))
    pending: dict[str, Any] | None = None

    def flush() -> None:
        nonlocal pending
        if pending is not None and (pending["content"] or pending["calls"]):
            out.append(
                ChatMessage(
                    role="assistant",
                    content=pending["content"] or None,
                    tool_calls=tuple(pending["calls"]),
                )
            )
        pending = None

    for row in rows:
        role, data = row["role"], row["data"]
        key = (row["run_id"], data.get("iteration"))
        if role == "assistant":
            flush()
            pending = {"key": key, "content": row["content"], "calls": []}
        elif role == "tool_call":
            if data["tool_call_id"] not in results:
                continue
            if pending is None or pending["key"] != key:
                flush()
                pending = {"key": key, "content": None, "calls": []}
            pending["calls"].append(
                ToolCallRequest(
                    id=data["tool_call_id"],
                    name=data["name"],
                    arguments=call_arguments(data.get("arguments")),
                )
            )
        elif role == "tool_result":
            flush()
            if data["tool_call_id"] in calls:
                out.append(
                    ChatMessage(
                        role="tool",
                        content=tool_text(row["content"]),
                        tool_call_id=data["tool_call_id"],
                        name=data.get("name"),
                    )
                )
        else:  # user, system
            flush()
            out.append(ChatMessage(role=role, content=str(row["content"] or "")))
    flush()
    return out
