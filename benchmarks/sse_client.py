"""Cheap SSE subscribers: many raw asyncio connections in one process.

Each subscriber is an ``asyncio.Protocol`` (no coroutine per read).  On each
read it de-chunks the HTTP body, keeps the tail after the last blank line for
the next read, and runs two C-level regexes over the complete frames: the
``id:`` of every ``log`` frame and every ``"time"`` value (a third, slower
pattern pairs them when a block also holds other frame types).  Nothing
else is parsed.  Per subscriber it tracks the count, the first and last id and
order violations (an id not greater than the previous one); latency is
``receipt wall clock - event time`` bucketed at 0.1 ms into one histogram per
process.  Frames arriving in one read share one receipt timestamp.

A 10 ms ticker measures event-loop lag: a high lag means this process, not
the server, was late, and the latency numbers include that delay.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import Counter
from datetime import datetime
from multiprocessing.queues import Queue
from typing import Any, cast

# Patterns start with a literal so ``re`` can skip ahead quickly; a block is scanned with
# the two cheap patterns and re-scanned with the paired one only when they disagree.
LOG_ID_RE = re.compile(rb"\nid: ?(\d+)\nevent: ?log\n")
TIME_RE = re.compile(rb'"time": ?"([^"]+)"')
PAIRED_RE = re.compile(rb'\nid: ?(\d+)\nevent: ?log\ndata: ?[^\n]*?"time": ?"([^"]+)"')
BUCKETS_PER_MS = 10
MAX_BUCKET = 60_000 * BUCKETS_PER_MS  # 60 s; later arrivals land in the last bucket


class Shared:
    """State shared by all subscribers of the process."""

    def __init__(self) -> None:
        self.hist: Counter[int] = Counter()
        self.time_cache: dict[bytes, float] = {}
        self.parse_errors = 0

    def event_time(self, raw: bytes) -> float:
        cached = self.time_cache.get(raw)
        if cached is None:
            if len(self.time_cache) > 100_000:
                self.time_cache.clear()
            cached = datetime.fromisoformat(raw.decode().replace("Z", "+00:00")).timestamp()
            self.time_cache[raw] = cached
        return cached


class Subscriber(asyncio.Protocol):
    """One SSE connection; see the module docstring for what it records."""

    def __init__(self, shared: Shared, request: bytes) -> None:
        self.shared = shared
        self.request = request
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.head = b""
        self.status = 0
        self.chunked = False
        self.raw = b""  # undecoded chunked bytes
        self.chunk_left = 0  # payload bytes left in the current chunk (+2 for its CRLF)
        self.text = b""  # decoded bytes after the last complete frame
        self.count = 0
        self.first_id = 0
        self.last_id = 0
        self.order_errors = 0
        self.ended = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before stream start: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.head[9:12])
            self.chunked = b"transfer-encoding: chunked" in self.head[:end].lower()
            data, self.head = self.head[end + 4 :], b""
            if self.status != 200:
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(f"HTTP {self.status}"))
                if self.transport is not None:
                    self.transport.close()
                return
        body = self._dechunk(data) if self.chunked else data
        if not body:
            return
        if not self.ready.done():
            self.ready.set_result(None)
        text = self.text + body
        cut = text.rfind(b"\n\n")
        if cut < 0:
            self.text = text
            return
        frames, self.text = text[: cut + 2], text[cut + 2 :]
        self._frames(frames, now)

    def _frames(self, frames: bytes, now: float) -> None:
        ids, times = self._parse(b"\n" + frames)
        if ids:
            seqs = list(map(int, ids))
            if seqs[0] <= self.last_id:
                self.order_errors += 1
            if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
                self.order_errors += sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
            if not self.first_id:
                self.first_id = seqs[0]
            self.last_id = seqs[-1]
            self.count += len(seqs)
            hist = self.shared.hist
            for raw, n in Counter(times).items():
                bucket = int((now - self.shared.event_time(raw)) * 1000 * BUCKETS_PER_MS)
                hist[min(max(bucket, 0), MAX_BUCKET)] += n
        if b"event: stream.end" in frames or b"event:stream.end" in frames:
            self.ended = True
            if self.transport is not None:
                self.transport.close()

    def _parse(self, block: bytes) -> tuple[list[bytes], list[bytes]]:
        """Ids and times of the ``log`` frames in ``block`` (which starts with a newline)."""
        ids: list[bytes] = LOG_ID_RE.findall(block)
        if not ids:
            return ids, []
        times: list[bytes] = TIME_RE.findall(block)
        if len(times) == len(ids) and block.count(b"\nevent:") == len(ids):
            return ids, times
        pairs: list[tuple[bytes, bytes]] = PAIRED_RE.findall(block)
        if len(pairs) != len(ids):
            self.shared.parse_errors += 1
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def _dechunk(self, data: bytes) -> bytes:
        """Strip chunked transfer framing; bounded by the bytes available."""
        raw = self.raw + data if self.raw else data
        out: list[bytes] = []
        pos, size = 0, len(raw)
        while pos < size:
            if self.chunk_left > 0:
                take = min(self.chunk_left, size - pos)
                out.append(raw[pos : pos + take])
                self.chunk_left -= take
                pos += take
                if self.chunk_left:
                    break
                self.chunk_left = -2  # the CRLF after the payload
            if self.chunk_left < 0:
                if size - pos < 2:
                    break
                pos += 2
                self.chunk_left = 0
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                break
            length = int(raw[pos:eol].split(b";", 1)[0], 16)
            pos = eol + 2
            if length == 0:
                break
            self.chunk_left = length
        self.raw = raw[pos:]
        return b"".join(out)


async def _lag_ticker(lags: list[float], stop: asyncio.Event) -> None:
    """Record how late a 10 ms timer fires; bounded by ``stop`` and the caller's timeout."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + 0.01
        await asyncio.sleep(0.01)
        lags.append(max(0.0, loop.time() - due))


async def _main(host: str, port: int, path: str, count: int, out: Queue[Any], limit: float) -> None:
    loop = asyncio.get_running_loop()
    shared = Shared()
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"
    subs: list[Subscriber] = []
    failures: list[str] = []
    async with asyncio.timeout(60):
        for start in range(0, count, 50):  # connect in slices to spare the listen backlog
            batch = [Subscriber(shared, request.encode()) for _ in range(min(50, count - start))]
            subs.extend(batch)
            for sub in batch:
                await loop.create_connection(lambda s=sub: s, host, port)  # type: ignore[misc]
            done = await asyncio.gather(*(s.ready for s in batch), return_exceptions=True)
            failures.extend(str(d) for d in done if isinstance(d, BaseException))
    out.put(("ready", count - len(failures), failures[:3]))
    lags: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(_lag_ticker(lags, stop))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        async with asyncio.timeout(limit):
            await asyncio.gather(*(s.closed for s in subs))
    except TimeoutError:
        pass
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    stop.set()
    await ticker
    for sub in subs:
        if sub.transport is not None:
            sub.transport.close()
    lags.sort()
    summary = [(s.count, s.first_id, s.last_id, s.order_errors, s.ended) for s in subs]
    out.put(
        (
            "result",
            {
                "subscribers": summary,
                "hist": dict(shared.hist),
                "parse_errors": shared.parse_errors,
                "cpu": cpu / wall if wall > 0 else 0.0,
                "lag_p99_ms": lags[int(len(lags) * 0.99)] * 1000 if lags else 0.0,
                "lag_max_ms": lags[-1] * 1000 if lags else 0.0,
            },
        )
    )


def subscriber_process(
    host: str, port: int, path: str, count: int, out: Queue[Any], limit: float
) -> None:
    """Process entry: open ``count`` subscribers, report readiness, then the results.

    ``limit`` bounds, in seconds after readiness, how long to wait for every
    stream to end (``stream.end`` or server close).
    """
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    try:
        asyncio.run(_main(host, port, path, count, out, limit))
    except Exception as exc:  # report instead of dying silently
        out.put(("error", f"{type(exc).__name__}: {exc}", []))
