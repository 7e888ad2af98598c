"""The tools an agent's model may call during a turn: :class:`Toolbox`.

An agent's tool declarations (:mod:`runyard.agents.tool_declarations`) become a toolbox for the
length of a turn::

    async with Toolbox.open(agent["tools"], http=client, allow_private=False) as toolbox:
        specs = toolbox.specs()                      # offered to the model
        result = await toolbox.call(name, arguments)  # ToolResult(ok, content, error)

- ``builtin`` tools run in :mod:`runyard.agents.builtins`.
- ``http`` tools POST their arguments as JSON to their URL, once the arguments match the tool's
  ``parameters`` schema. A 2xx answer's body (JSON, or text) is the result; at most 1 MiB is
  read, and redirects are not followed.
- ``mcp`` declarations connect, when the toolbox opens, to an MCP server over streamable HTTP
  (the ``mcp`` package's :class:`mcp.Client`) and offer its tools (those of ``allowed_tools``
  when given). A server that cannot be reached is reported in :attr:`Toolbox.errors` and the
  turn goes on without its tools. Every session is closed when the toolbox closes.

Unless ``allow_private``, a URL whose host is, or resolves to, a private, loopback, link-local,
multicast, reserved or unspecified address is refused (SSRF, as for webhooks:
:mod:`runyard.webhooks.targets`), and requests connect to the very addresses that were checked,
so a name that resolves elsewhere the second time (DNS rebinding) gains nothing.

Nothing a tool does raises out of :meth:`Toolbox.call`: a failure is a ``ToolResult`` with a
short ``error`` the model can read (only cancellation propagates). Errors never carry a
declaration's headers.
"""

import asyncio
import contextlib
import ipaddress
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import httpx2
import mcp
import mcp.types
import pydantic
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from mcp.client.streamable_http import streamable_http_client

from runyard import __version__
from runyard.agents import builtins
from runyard.agents.tool_declarations import (
    MAX_DESCRIPTION_LENGTH,
    BuiltinTool,
    HttpTool,
    McpTool,
    ToolDeclaration,
)
from runyard.llm.types import ToolSpec
from runyard.webhooks import targets

log = logging.getLogger(__name__)

#: the largest tool answer read (an HTTP body, an MCP result as JSON)
MAX_RESULT_BYTES = 1 << 20
#: how much of an error answer's body is shown
MAX_ERROR_BODY_CHARS = 500
MAX_ERROR_LENGTH = 1000
#: at most this many of a host's addresses are tried when connecting fails
MAX_ADDRESSES = 3
MAX_MCP_TOOLS = 128
MAX_MCP_PAGES = 10
#: how long closing an MCP session may take before its task is cancelled
CLOSE_SECONDS = 5.0
#: the read timeout of an MCP session's HTTP client (its GET stream idles in between)
MCP_STREAM_READ_SECONDS = 300.0
#: how much longer than a call may take the MCP client waits for an answer itself
BACKSTOP_SECONDS = 5.0
USER_AGENT = f"Runyard-Agents/{__version__}"

_declaration: pydantic.TypeAdapter[HttpTool | McpTool | BuiltinTool] = pydantic.TypeAdapter(
    ToolDeclaration
)


@dataclass(frozen=True)
class ToolResult:
    """What a tool call gave: ``content`` (JSON-able) when ``ok``, else a short ``error``."""

    ok: bool
    content: Any = None
    error: str | None = None

    @classmethod
    def success(cls, content: Any) -> "ToolResult":
        return cls(ok=True, content=content)

    @classmethod
    def failure(cls, error: str) -> "ToolResult":
        if len(error) > MAX_ERROR_LENGTH:
            error = error[: MAX_ERROR_LENGTH - 1] + "…"
        return cls(ok=False, error=error)


class _Tool(Protocol):
    spec: ToolSpec

    async def call(self, arguments: dict[str, Any]) -> ToolResult: ...


class Toolbox:
    """The tools of one agent turn; open it with :meth:`open`."""

    def __init__(self, *, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        #: declarations that could not be opened (the turn goes on without their tools)
        self.errors: list[str] = []
        self._tools: dict[str, _Tool] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        declarations: Sequence[dict[str, Any]],
        *,
        http: httpx.AsyncClient,
        allow_private: bool,
        timeout_seconds: float = 30.0,
    ) -> AsyncIterator["Toolbox"]:
        """The toolbox of ``declarations`` (an agent's stored ``tools``), its MCP servers
        connected; they are disconnected when the context exits. ``http`` (an HTTP/1.1
        client, as httpx's default is) sends the http tools' requests; redirects are not
        followed whatever its settings. ``timeout_seconds`` bounds every call and the
        connection to each MCP server (they connect concurrently)."""
        toolbox = cls(timeout_seconds=timeout_seconds)
        parsed = toolbox._parse(declarations)
        for declaration in parsed:
            if isinstance(declaration, BuiltinTool):
                toolbox._add(_BuiltinTool(builtins.SPECS[declaration.name]))
            elif isinstance(declaration, HttpTool):
                toolbox._add(_HttpTool(declaration, http, allow_private, timeout_seconds))
        servers = [
            _McpServer(declaration, allow_private=allow_private, timeout=timeout_seconds)
            for declaration in parsed
            if isinstance(declaration, McpTool)
        ]
        try:
            opened = await asyncio.gather(
                *(server.open() for server in servers), return_exceptions=True
            )
            for server, outcome in zip(servers, opened, strict=True):
                if isinstance(outcome, BaseException):
                    if isinstance(outcome, asyncio.CancelledError):
                        raise outcome
                    toolbox.errors.append(f"MCP server {server.label}: {describe(outcome)}")
                    log.warning("agents: MCP server %s: %s", server.label, describe(outcome))
                else:
                    toolbox._add_mcp_tools(server, outcome)
            yield toolbox
        finally:
            await asyncio.gather(*(server.close() for server in servers))

    def specs(self) -> list[ToolSpec]:
        """Every tool the model may call."""
        return [tool.spec for tool in self._tools.values()]

    async def call(self, name: str, arguments: dict[str, Any] | str) -> ToolResult:
        """Call the tool ``name``; never raises but for cancellation."""
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult.failure(f"no tool named {name[:100]}")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except (ValueError, RecursionError):
                return ToolResult.failure("the arguments are not valid JSON")
        if not isinstance(arguments, dict):
            return ToolResult.failure("the arguments must be a JSON object")
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await tool.call(arguments)
        except TimeoutError:
            return ToolResult.failure(f"the tool did not answer within {self.timeout_seconds:g} s")
        except Exception as exc:
            log.warning("agents: tool %s failed: %s", name, describe(exc))
            return ToolResult.failure(describe(exc))

    # -- building ------------------------------------------------------------------------

    def _parse(
        self, declarations: Sequence[dict[str, Any]]
    ) -> list[HttpTool | McpTool | BuiltinTool]:
        parsed: list[HttpTool | McpTool | BuiltinTool] = []
        for index, raw in enumerate(declarations):
            try:
                parsed.append(_declaration.validate_python(raw))
            except pydantic.ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                self.errors.append(f"tool {index}: invalid declaration ({where}: {first['msg']})")
        return parsed

    def _add(self, tool: _Tool) -> None:
        name = tool.spec.name
        if name in self._tools:
            self.errors.append(f"two tools are named {name}; the first one is kept")
            return
        self._tools[name] = tool

    def _add_mcp_tools(self, server: "_McpServer", tools: list[mcp.types.Tool]) -> None:
        allowed = server.declaration.allowed_tools
        listed = {tool.name for tool in tools}
        for missing in sorted(set(allowed or ()) - listed):
            self.errors.append(f"MCP server {server.label}: it has no tool named {missing}")
        kept = [tool for tool in tools if allowed is None or tool.name in allowed]
        if len(kept) > MAX_MCP_TOOLS:
            self.errors.append(
                f"MCP server {server.label}: {len(kept)} tools, only the first "
                f"{MAX_MCP_TOOLS} are offered (use allowed_tools)"
            )
            kept = kept[:MAX_MCP_TOOLS]
        for tool in kept:
            name = _model_name(tool.name)
            if name in self._tools:
                self.errors.append(
                    f"MCP server {server.label}: its tool {tool.name} is not offered, "
                    f"another tool is named {name}"
                )
                continue
            description = tool.description or tool.title or ""
            spec = ToolSpec(
                name=name,
                description=description[:MAX_DESCRIPTION_LENGTH],
                parameters=dict(tool.input_schema),
            )
            self._tools[name] = _McpToolHandle(spec, server, tool.name)


# -- builtin tools ------------------------------------------------------------------------------


@dataclass
class _BuiltinTool:
    spec: ToolSpec

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        try:
            return ToolResult.success(builtins.run(self.spec.name, arguments))
        except builtins.BuiltinError as exc:
            return ToolResult.failure(str(exc))


# -- http tools ---------------------------------------------------------------------------------


class _HttpTool:
    def __init__(
        self, declaration: HttpTool, http: httpx.AsyncClient, allow_private: bool, timeout: float
    ) -> None:
        self.spec = ToolSpec(declaration.name, declaration.description, declaration.parameters)
        self._url = httpx.URL(declaration.url)
        self._headers = declaration.headers
        self._validator = Draft202012Validator(declaration.parameters)
        self._http = http
        self._allow_private = allow_private
        self._timeout = timeout

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        problem = _schema_problem(self._validator, arguments)
        if problem is not None:
            return ToolResult.failure(f"invalid arguments: {problem}")
        try:
            addresses = await checked_addresses(self._url, allow_private=self._allow_private)
        except targets.TargetRefused as exc:
            return ToolResult.failure(f"refused: {exc}")
        body = json.dumps(arguments).encode()
        failure: httpx.ConnectError | None = None
        try:
            for address in addresses:
                try:
                    return await self._send(self._request(address, body))
                except httpx.ConnectError as exc:
                    failure = exc
        except httpx.TimeoutException:
            return ToolResult.failure(f"the tool did not answer within {self._timeout:g} s")
        except httpx.HTTPError as exc:
            return ToolResult.failure(describe(exc))
        assert failure is not None
        return ToolResult.failure(describe(failure))

    def _request(self, address: str, body: bytes) -> httpx.Request:
        # connect to an address that was checked, speaking to the host by its name; one
        # connection per call, so a pooled connection never carries another host's request
        headers = httpx.Headers({"User-Agent": USER_AGENT, "Accept": "application/json"})
        headers.update(self._headers)
        headers["Content-Type"] = "application/json"
        headers["Host"] = self._url.netloc.decode("ascii")
        headers["Connection"] = "close"
        url = self._url.copy_with(host=address)
        extensions = {"sni_hostname": self._url.host} if url.scheme == "https" else {}
        return self._http.build_request(
            "POST", url, content=body, headers=headers, extensions=extensions, timeout=self._timeout
        )

    async def _send(self, request: httpx.Request) -> ToolResult:
        response = await self._http.send(request, stream=True, follow_redirects=False)
        try:
            if not 200 <= response.status_code < 300:
                head = await _read(response, 4 * MAX_ERROR_BODY_CHARS, truncate=True)
                text = _decode(head or b"", response)[:MAX_ERROR_BODY_CHARS].strip()
                return ToolResult.failure(
                    f"HTTP {response.status_code}: {text}"
                    if text
                    else f"HTTP {response.status_code}"
                )
            body = await _read(response, MAX_RESULT_BYTES, truncate=False)
            if body is None:
                return ToolResult.failure(f"the answer is larger than {MAX_RESULT_BYTES} bytes")
            return ToolResult.success(_content_of(body, response))
        finally:
            await response.aclose()


async def _read(response: httpx.Response, limit: int, *, truncate: bool) -> bytes | None:
    """At most ``limit`` bytes of the body: the first ones when ``truncate``, else None when
    it is longer."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return bytes(body[:limit]) if truncate else None
    return bytes(body)


def _decode(body: bytes, response: httpx.Response) -> str:
    try:
        return body.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:  # an unknown charset
        return body.decode("utf-8", errors="replace")


def _content_of(body: bytes, response: httpx.Response) -> Any:
    """The body as JSON (NaN and Infinity are not), or as text when it is not JSON."""
    try:
        return json.loads(body, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return _decode(body, response)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _schema_problem(validator: Any, instance: Any) -> str | None:
    error = best_match(validator.iter_errors(instance))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    message = str(error.message)
    return f"{where}: {message}" if where else message


# -- where tools may connect --------------------------------------------------------------------


async def checked_addresses(url: httpx.URL, *, allow_private: bool) -> list[str]:
    """The addresses a call to ``url`` connects to (the first few its host resolves to), all
    public unless ``allow_private``; :class:`targets.TargetRefused` when the host does not
    resolve or is refused."""
    found = await targets.resolve(url)
    if not allow_private:
        for address in found:
            if targets.forbidden(ipaddress.ip_address(address.split("%", 1)[0])):
                shown = (
                    f"{address} is"
                    if url.host == address
                    else f"{url.host} resolves to {address}, which is"
                )
                raise targets.TargetRefused(
                    f"{shown} not a public address; tools may not call private, loopback, "
                    "link-local, multicast, reserved or unspecified addresses"
                )
    return found[:MAX_ADDRESSES]


def display(url: str) -> str:
    """``url`` without credentials, query or fragment: fit for messages and logs."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "(invalid URL)"
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}{parsed.path}"


def describe(exc: BaseException) -> str:
    """A short message for an exception (the first of a group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, targets.TargetRefused):
        return f"refused: {exc}"
    if isinstance(exc, mcp.MCPError):
        return f"MCP error {exc.code}: {exc.message}"
    if isinstance(exc, TimeoutError | httpx.TimeoutException | httpx2.TimeoutException):
        return str(exc) if isinstance(exc, TimeoutError) and str(exc) else "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- MCP servers --------------------------------------------------------------------------------


class PinnedTransport(httpx2.AsyncBaseTransport):
    """Sends an MCP session's requests to the checked addresses of its server's host (the
    host still named in ``Host`` and in TLS), and nowhere else."""

    def __init__(self, url: httpx2.URL, addresses: list[str]) -> None:
        self._host = url.host
        self._addresses = addresses
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        if url.host != self._host:
            raise httpx2.ConnectError(f"{url.host} is not the MCP server's host", request=request)
        extensions = dict(request.extensions)
        if url.scheme == "https":
            extensions["sni_hostname"] = url.host
        failure: httpx2.ConnectError | None = None
        for address in self._addresses:
            pinned = httpx2.Request(
                request.method,
                url.copy_with(host=address),
                headers=request.headers,
                stream=request.stream,
                extensions=extensions,
            )
            try:
                return await self._inner.handle_async_request(pinned)
            except httpx2.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def aclose(self) -> None:
        await self._inner.aclose()


class _McpServer:
    """One MCP session. Its ``mcp.Client`` lives in a task of its own, so the session's
    task groups never wrap the turn and its failures never cancel it; calls reach it from
    any task."""

    def __init__(self, declaration: McpTool, *, allow_private: bool, timeout: float) -> None:
        self.declaration = declaration
        self.label = display(declaration.url)
        self._allow_private = allow_private
        self._timeout = timeout
        self._client: mcp.Client | None = None
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> list[mcp.types.Tool]:
        """Connect and list the server's tools; raises when it cannot."""
        url = httpx.URL(self.declaration.url)
        addresses = await checked_addresses(url, allow_private=self._allow_private)
        ready: asyncio.Future[list[mcp.types.Tool]] = asyncio.get_running_loop().create_future()
        task = self._task = asyncio.create_task(
            self._serve(addresses, ready), name=f"mcp {self.label}"
        )
        waiting: set[asyncio.Future[Any]] = {ready, task}
        try:
            await asyncio.wait(waiting, timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await self._stop(task, ready)
            raise
        if ready.done():
            return ready.result()
        timed_out = not task.done()
        await self._stop(task, ready)
        if timed_out:
            raise TimeoutError(f"no answer within {self._timeout:g} s")
        raise ConnectionError("the session ended while connecting")

    async def _serve(
        self, addresses: list[str], ready: "asyncio.Future[list[mcp.types.Tool]]"
    ) -> None:
        try:
            async with (
                self._http_client(addresses) as http,
                mcp.Client(
                    streamable_http_client(self.declaration.url, http_client=http),
                    cache=None,
                    # a backstop: calls and connecting are bounded by ``timeout`` already
                    read_timeout_seconds=self._timeout + BACKSTOP_SECONDS,
                    client_info=mcp.types.Implementation(name="runyard", version=__version__),
                ) as client,
            ):
                tools = await self._list_tools(client)
                self._client = client
                ready.set_result(tools)
                await self._closing.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.warning(
                    "agents: MCP server %s: the session ended: %s", self.label, describe(exc)
                )
        finally:
            self._client = None

    def _http_client(self, addresses: list[str]) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers={"User-Agent": USER_AGENT, **self.declaration.headers},
            timeout=httpx2.Timeout(self._timeout, read=MCP_STREAM_READ_SECONDS),
            transport=PinnedTransport(httpx2.URL(self.declaration.url), addresses),
        )

    async def _list_tools(self, client: mcp.Client) -> list[mcp.types.Tool]:
        tools: list[mcp.types.Tool] = []
        cursor: str | None = None
        for _ in range(MAX_MCP_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        client = self._client
        if client is None:
            return ToolResult.failure(f"the MCP server {self.label} is not connected")
        return _result_of(await client.call_tool(name, arguments))

    async def close(self) -> None:
        """End the session (at once when it does not end within :data:`CLOSE_SECONDS`)."""
        task = self._task
        if task is None:
            return
        self._closing.set()
        try:
            await asyncio.wait({task}, timeout=CLOSE_SECONDS)
        finally:
            await self._stop(task)

    @staticmethod
    async def _stop(task: "asyncio.Task[None]", ready: "asyncio.Future[Any] | None" = None) -> None:
        """Cancel the session's task and wait (a while) for it to unwind; what it ended with
        is dropped (it was reported, or is of no interest once the session is given up)."""
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=CLOSE_SECONDS)
        for future in (task, ready):
            if future is not None and future.done() and not future.cancelled():
                future.exception()


@dataclass
class _McpToolHandle:
    spec: ToolSpec
    server: _McpServer
    remote_name: str = field(repr=False)

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        return await self.server.call(self.remote_name, arguments)


def _model_name(name: str) -> str:
    """An MCP tool's name as models accept it: ``^[a-zA-Z0-9_-]{1,64}$``."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in name)
    return cleaned[:64] or "_"


def _result_of(result: mcp.types.CallToolResult) -> ToolResult:
    if result.is_error:
        return ToolResult.failure(_text_of(result.content) or "the tool failed")
    content = result.structured_content
    if content is None:
        content = _text_of(result.content)
    try:
        size = len(json.dumps(content))
    except (TypeError, ValueError):
        return ToolResult.failure("the tool's result is not JSON")
    if size > MAX_RESULT_BYTES:
        return ToolResult.failure(f"the result is larger than {MAX_RESULT_BYTES} bytes")
    return ToolResult.success(content)


def _text_of(blocks: Sequence[mcp.types.ContentBlock]) -> str:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, mcp.types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp.types.EmbeddedResource) and isinstance(
            block.resource, mcp.types.TextResourceContents
        ):
            parts.append(block.resource.text)
        elif isinstance(block, mcp.types.ResourceLink):
            parts.append(f"[resource {block.uri}]")
        else:
            parts.append(f"[{block.type} content omitted]")
    return "\n".join(parts)
