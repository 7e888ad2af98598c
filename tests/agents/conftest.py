"""Fixtures of the tool tests: an HTTP tool target and an MCP server on loopback (one per
module), a client, and an HTTP tool declaration."""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.mcp_support import HttpToolTarget, McpTestServer

PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city"],
    "additionalProperties": False,
}


def http_tool(url: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "name": "forecast",
        "description": "The weather forecast for a city.",
        "parameters": PARAMETERS,
        "url": url,
        **fields,
    }


@pytest.fixture(scope="module")
def target_server() -> Iterator[HttpToolTarget]:
    with HttpToolTarget() as server:
        yield server


@pytest.fixture
def target(target_server: HttpToolTarget) -> HttpToolTarget:
    target_server.requests.clear()
    return target_server


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[McpTestServer]:
    with McpTestServer() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client
