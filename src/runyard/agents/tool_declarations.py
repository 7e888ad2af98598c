"""The tools an agent declares (DESIGN §9, §15), as the agents API validates them.

Three kinds, told apart by ``type``::

    {"type": "http", "name", "description", "parameters": <JSON Schema object>, "url", "headers"?}
    {"type": "mcp", "url", "headers"?, "allowed_tools"?}
    {"type": "builtin", "name": "current_time" | "calculator"}

Tool names are what OpenAI and Anthropic accept (``^[a-zA-Z0-9_-]{1,64}$``), and http and
builtin tools of one agent have distinct names (:data:`ToolList` checks it). An MCP server's
tools are only known when it is reached (:class:`runyard.agents.tools.Toolbox`), so
``allowed_tools`` names them as the server does. Whether a URL's host is public is checked when
a tool is called, not here: a name's addresses can change after the agent is saved.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import httpx
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
MAX_TOOLS = 64
MAX_URL_LENGTH = 2000
MAX_DESCRIPTION_LENGTH = 4000
MAX_HEADERS = 50
MAX_HEADER_VALUE_LENGTH = 4096
MAX_ALLOWED_TOOLS = 200
MAX_MCP_TOOL_NAME_LENGTH = 128
#: the parameters schema, serialized as JSON, is at most this long
MAX_PARAMETERS_BYTES = 65536
#: headers the HTTP client sets itself: a declaration may not replace them
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer"}
)

BuiltinName = Literal["current_time", "calculator"]
ToolName = Annotated[str, StringConstraints(pattern=TOOL_NAME_PATTERN)]
#: a tool as an MCP server names it (the protocol allows more than the model providers do)
McpToolName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_MCP_TOOL_NAME_LENGTH, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise ValueError("only http and https URLs are allowed")
    if not parsed.host:
        raise ValueError("the URL has no host")
    return url


def check_parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema (Draft 2020-12) whose root is ``{"type": "object", ...}``."""
    if schema.get("type") != "object":
        raise ValueError('parameters must be a JSON Schema object: {"type": "object", ...}')
    try:
        size = len(json.dumps(schema))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"parameters is not JSON: {exc}") from exc
    if size > MAX_PARAMETERS_BYTES:
        raise ValueError(f"parameters is longer than {MAX_PARAMETERS_BYTES} bytes as JSON")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(part) for part in exc.path)
        at = f" (at {where})" if where else ""
        raise ValueError(f"parameters is not a valid JSON Schema{at}: {exc.message}") from exc
    return schema


def check_header_name(name: str) -> str:
    if name.lower() in RESERVED_HEADERS:
        raise ValueError(f"the {name} header is set by Runyard and cannot be declared")
    return name


Url = Annotated[str, StringConstraints(max_length=MAX_URL_LENGTH), AfterValidator(check_url)]
HeaderName = Annotated[
    str,
    # an RFC 9110 token
    StringConstraints(min_length=1, max_length=256, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"),
    AfterValidator(check_header_name),
]
HeaderValue = Annotated[
    str,
    # visible ASCII with inner spaces or tabs: what every HTTP client sends as is (a value it
    # would refuse could end up quoted in an error)
    StringConstraints(
        max_length=MAX_HEADER_VALUE_LENGTH,
        pattern=r"^(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?$",
    ),
]
Headers = Annotated[dict[HeaderName, HeaderValue], Field(max_length=MAX_HEADERS)]
Parameters = Annotated[dict[str, Any], AfterValidator(check_parameters)]


class HttpTool(BaseModel):
    """A function the model may call: its arguments are POSTed as JSON to ``url``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["http"]
    name: ToolName = Field(description="What the model calls it: `^[a-zA-Z0-9_-]{1,64}$`.")
    description: str = Field(max_length=MAX_DESCRIPTION_LENGTH, description="Told to the model.")
    parameters: Parameters = Field(
        description='JSON Schema (2020-12) of the arguments: `{"type": "object", ...}`.'
    )
    url: Url = Field(description="http(s) URL the arguments are POSTed to.")
    headers: Headers = Field(
        default_factory=dict, description="Sent with every call (e.g. `Authorization`)."
    )


class McpTool(BaseModel):
    """The tools of an MCP server reached over streamable HTTP."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["mcp"]
    url: Url = Field(description="The server's streamable HTTP endpoint.")
    headers: Headers = Field(
        default_factory=dict, description="Sent with every request (e.g. `Authorization`)."
    )
    allowed_tools: Annotated[list[McpToolName], Field(max_length=MAX_ALLOWED_TOOLS)] | None = Field(
        default=None,
        description="Only these of the server's tools (as the server names them); "
        "all of them when absent.",
    )


class BuiltinTool(BaseModel):
    """A tool Runyard runs itself."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["builtin"]
    name: BuiltinName


ToolDeclaration = Annotated[HttpTool | McpTool | BuiltinTool, Field(discriminator="type")]


def check_unique_names(
    tools: Sequence[HttpTool | McpTool | BuiltinTool | Mapping[str, Any]],
) -> None:
    """Refuse two http or builtin tools with one name (models or their plain dicts)."""
    seen: set[str] = set()
    for tool in tools:
        kind, name = (
            (tool.get("type"), tool.get("name"))
            if isinstance(tool, Mapping)
            else (tool.type, getattr(tool, "name", None))
        )
        if kind not in ("http", "builtin") or not isinstance(name, str):
            continue
        if name in seen:
            raise ValueError(f"two tools are named {name!r}; tool names must be unique")
        seen.add(name)


def _unique(
    tools: list[HttpTool | McpTool | BuiltinTool],
) -> list[HttpTool | McpTool | BuiltinTool]:
    check_unique_names(tools)
    return tools


#: an agent's ``tools``: at most 64 declarations, http and builtin names unique
ToolList = Annotated[list[ToolDeclaration], Field(max_length=MAX_TOOLS), AfterValidator(_unique)]
