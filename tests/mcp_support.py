"""Real tool servers on loopback, for the agent tests.

- :class:`McpTestServer`: an MCP server (the ``mcp`` package's low-level ``Server``) over
  streamable HTTP, with the tools ``add(a, b)``, ``weather(city)``, ``boom()`` (raises),
  ``text.echo(text)`` and ``sleep(seconds)``.
- :class:`HttpToolTarget`: what an ``http`` tool POSTs to (echo, text, any status, slow, big,
  redirect), recording every request.

Each runs under uvicorn on 127.0.0.1 (a port of its own) in a thread with its own event loop,
so it serves sync and async tests alike, and both kinds of context manager work::

    with McpTestServer() as server:            # or: async with McpTestServer() as server:
        tools = [{"type": "mcp", "url": server.url}]
        ...
        assert server.call_count == 1
"""

import abc
import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

import anyio
import uvicorn
from mcp.server import Server, ServerRequestContext
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

ASGIApp = Any
START_SECONDS = 10.0


@dataclass
class Received:
    """One HTTP request a server got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


class ServedApp(abc.ABC):
    """An ASGI app served by uvicorn on loopback in a thread with its own event loop."""

    lifespan: Literal["on", "off"] = "off"

    def __init__(self) -> None:
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @abc.abstractmethod
    def app(self) -> ASGIApp:
        """A fresh app for each start."""

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app(),
            log_config=None,
            log_level="warning",
            lifespan=self.lifespan,
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        server = self._server = uvicorn.Server(config)
        thread = self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=type(self).__name__, daemon=True
        )
        thread.start()
        deadline = time.monotonic() + START_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(START_SECONDS)
            assert not self._thread.is_alive(), f"{type(self).__name__} did not stop"
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)


# -- an MCP server --------------------------------------------------------------------------

MCP_TOOLS = [
    Tool(
        name="add",
        description="Add two integers.",
        input_schema={
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
        output_schema={
            "type": "object",
            "properties": {"result": {"type": "integer"}},
            "required": ["result"],
        },
    ),
    Tool(
        name="weather",
        description="Today's weather in a city.",
        input_schema={
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    ),
    Tool(name="boom", description="Always fails.", input_schema={"type": "object"}),
    Tool(
        name="text.echo",  # MCP allows dots, models do not: offered as text_echo
        description="Answers its text.",
        input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
    ),
    Tool(
        name="sleep",
        description="Answers after some seconds.",
        input_schema={"type": "object", "properties": {"seconds": {"type": "number"}}},
    ),
]


class McpTestServer(ServedApp):
    """An MCP server over streamable HTTP at :attr:`url`; :attr:`calls` lists the tool calls
    it received (name, arguments) and :attr:`requests` its HTTP requests (bodies not kept)."""

    lifespan: Literal["on", "off"] = "on"  # the session manager runs in the app's lifespan

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.requests: list[Received] = []

    @property
    def url(self) -> str:
        return f"{self.base_url}/mcp"

    @property
    def call_count(self) -> int:
        return len(self.calls)

    def app(self) -> ASGIApp:
        server: Server[Any] = Server(
            "runyard-test", version="1.0", on_list_tools=self._list, on_call_tool=self._call
        )
        inner = server.streamable_http_app()

        async def recording(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
                self.requests.append(Received(scope["method"], scope["path"], headers))
            await inner(scope, receive, send)

        return recording

    async def _list(
        self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        return ListToolsResult(tools=MCP_TOOLS)

    async def _call(
        self, ctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult:
        arguments = dict(params.arguments or {})
        self.calls.append((params.name, arguments))
        try:
            return await self._run(params.name, arguments)
        except Exception as exc:  # a failing tool is a result with is_error, as MCPServer does
            return CallToolResult(
                content=[TextContent(text=f"Error executing tool {params.name}: {exc}")],
                is_error=True,
            )

    async def _run(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        if name == "add":
            total = int(arguments["a"]) + int(arguments["b"])
            return CallToolResult(
                content=[TextContent(text=str(total))], structured_content={"result": total}
            )
        if name == "weather":
            return CallToolResult(
                content=[TextContent(text=f"Sunny and 21 °C in {arguments['city']}.")]
            )
        if name == "boom":
            raise RuntimeError("boom: the tool broke")
        if name == "text.echo":
            return CallToolResult(content=[TextContent(text=str(arguments.get("text", "")))])
        if name == "sleep":
            await anyio.sleep(float(arguments.get("seconds", 1)))
            return CallToolResult(content=[TextContent(text="slept")])
        raise ValueError(f"Unknown tool: {name}")


# -- an HTTP tool target --------------------------------------------------------------------


class HttpToolTarget(ServedApp):
    """Routes (all POST): ``/echo`` answers ``{"received": <the JSON body>}``, ``/text`` plain
    text, ``/status/{code}`` that status with a text body, ``/slow?seconds=`` answers late
    (or as soon as the client gives up), ``/big?bytes=`` that many bytes, ``/redirect`` a 307
    to ``/echo``. :attr:`requests` lists what came."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Received] = []

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def app(self) -> ASGIApp:
        return Starlette(
            routes=[
                Route("/echo", self._echo, methods=["POST"]),
                Route("/text", self._text, methods=["POST"]),
                Route("/status/{code:int}", self._status, methods=["POST"]),
                Route("/slow", self._slow, methods=["POST"]),
                Route("/big", self._big, methods=["POST"]),
                Route("/redirect", self._redirect, methods=["POST"]),
            ]
        )

    async def _record(self, request: Request) -> Received:
        received = Received(
            request.method,
            request.url.path,
            {k.lower(): v for k, v in request.headers.items()},
            await request.body(),
        )
        self.requests.append(received)
        return received

    async def _echo(self, request: Request) -> Response:
        received = await self._record(request)
        return JSONResponse({"received": received.json() if received.body else None})

    async def _text(self, request: Request) -> Response:
        await self._record(request)
        return PlainTextResponse("plain words")

    async def _status(self, request: Request) -> Response:
        await self._record(request)
        code = int(request.path_params["code"])
        return PlainTextResponse(f"the target failed with {code}", status_code=code)

    async def _slow(self, request: Request) -> Response:
        await self._record(request)
        deadline = time.monotonic() + float(request.query_params.get("seconds", "5"))
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                return Response(status_code=499)
            await asyncio.sleep(0.02)
        return JSONResponse({"late": True})

    async def _big(self, request: Request) -> Response:
        await self._record(request)
        return PlainTextResponse("x" * int(request.query_params["bytes"]))

    async def _redirect(self, request: Request) -> Response:
        await self._record(request)
        return RedirectResponse("/echo", status_code=307)
