"""A deliberately tiny HTTP/1.1 keep-alive client on asyncio streams.

Why not httpx: on a 2-core machine a full-featured client spends more CPU per
request than the server under test, so it measures itself.  This client only
writes a pre-encoded request and reads the status line, the headers and a
``Content-Length`` (or chunked) body.  It is used by the load generator, the
SSE publisher and the setup steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Headers = Sequence[tuple[str, str]]


class HttpProtocolError(Exception):
    """The peer answered with something this client cannot parse."""


@dataclass(frozen=True, slots=True)
class Response:
    """Status code and raw body of one response."""

    status: int
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


def build_request(
    method: str,
    path: str,
    host: str,
    body: bytes | None = None,
    headers: Headers = (),
) -> bytes:
    """Encode one request, ready to be written as-is on a keep-alive connection."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    elif method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def json_body(payload: Any) -> bytes:
    """Compact JSON bytes for a request body."""
    return json.dumps(payload, separators=(",", ":")).encode()


class RawConnection:
    """One keep-alive connection; requests are sent strictly one after another."""

    def __init__(self, host: str, port: int, headers: Headers = ()) -> None:
        self.host = host
        self.port = port
        self.headers = tuple(headers)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open (or re-open) the TCP connection."""
        await self.close()
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        """Close the connection if open; never raises."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def encode(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """A request for this connection's host with its default headers."""
        return build_request(method, path, f"{self.host}:{self.port}", body, self.headers)

    async def request(self, method: str, path: str, payload: Any = None) -> Response:
        """Send a JSON request (``payload`` None means no body) and read the answer."""
        body = None if payload is None else json_body(payload)
        return await self.send(self.encode(method, path, body))

    async def send(self, raw: bytes) -> Response:
        """Write a pre-encoded request and read exactly one response."""
        if self._writer is None or self._reader is None:
            await self.connect()
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:  # pragma: no cover - connect() sets both
            raise HttpProtocolError("not connected")
        writer.write(raw)
        return await self._read_response(reader)

    async def _read_response(self, reader: asyncio.StreamReader) -> Response:
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.") or len(head) < 12:
            raise HttpProtocolError(f"bad status line: {head[:40]!r}")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lower.find(b"\r\n", at + 2)
            body = await reader.readexactly(int(head[at + 17 : end]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            body = await _read_chunked(reader)
        else:
            body = b""
        if b"\r\nconnection: close" in lower:
            await self.close()
        return Response(status, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """Read a chunked body (bounded: at most 100,000 chunks)."""
    parts: list[bytes] = []
    for _ in range(100_000):
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    raise HttpProtocolError("too many chunks")
