"""Compare latency: ``GET /v1/runs/{a}/compare/{b}`` for two runs with 5,000-leaf outputs.

Method (sequential, in the orchestrating process, one keep-alive connection):
1. A pipeline of its own (``bench-compare``); two runs completed over the runner protocol in
   open mode (``running``, then ``completed`` with the output, metrics and usage).
2. The outputs are 250 records x 20 fields (5,000 leaves: strings, numbers, booleans, nulls)
   nested under ``/records/<i>/<field>``; run b differs from a in every 7th leaf and has 10
   records a lacks, so every field status (same, different, only_in_a, only_in_b) occurs.
3. ``warmup`` untimed compares, then ``samples`` timed ones: request written -> whole
   response read. Each answer's counts are checked against what the outputs imply.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.httpraw import RawConnection
from benchmarks.loadgen import percentile
from benchmarks.report import Row
from benchmarks.servers import Server

PIPELINE = "bench-compare"
RECORDS, FIELDS = 250, 20
TARGET_MS = 100.0
Headers = tuple[tuple[str, str], ...]


@dataclass
class CompareResult:
    samples: int = 0
    leaves: int = 0
    response_bytes: int = 0
    times_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _value(i: int, j: int, changed: bool) -> Any:
    kind = j % 4
    if kind == 0:
        return f"record {i} field {j}" + (" (b)" if changed else "")
    if kind == 1:
        return i * 100 + j + (1 if changed else 0)
    if kind == 2:
        return (i + j) % 2 == 0 if not changed else (i + j) % 2 == 1
    return None if not changed else "was null"


def outputs() -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """The two outputs and the field counts a correct compare reports."""
    a = {"records": [{f"f{j}": _value(i, j, False) for j in range(FIELDS)} for i in range(RECORDS)]}
    b_records = [
        {f"f{j}": _value(i, j, (i * FIELDS + j) % 7 == 0) for j in range(FIELDS)}
        for i in range(RECORDS)
    ]
    b_records += [{f"f{j}": j for j in range(FIELDS)} for _ in range(10)]
    b = {"records": b_records}
    different = sum(1 for n in range(RECORDS * FIELDS) if n % 7 == 0)
    counts = {
        "fields_same": RECORDS * FIELDS - different,
        "fields_different": different,
        "fields_only_in_a": 0,
        "fields_only_in_b": 10 * FIELDS,
    }
    return a, b, counts


async def _completed_run(conn: RawConnection, output: Any, f1: float) -> str:
    created = await conn.request("POST", "/v1/runs", {"pipeline": PIPELINE, "input": {"f1": f1}})
    if created.status != 201:
        raise RuntimeError(f"create run: HTTP {created.status} {created.body[:200]!r}")
    run_id = str(created.json()["id"])
    for body in (
        {"status": "running"},
        {
            "status": "completed",
            "output": output,
            "metrics": {"f1": f1, "precision": f1 + 0.1},
            "usage": {"cost_usd": f1 / 100},
        },
    ):
        answer = await conn.request("POST", f"/v1/runner/runs/{run_id}/status", body)
        if answer.status != 200:
            raise RuntimeError(f"report: HTTP {answer.status} {answer.body[:200]!r}")
    return run_id


async def _bench(server: Server, headers: Headers, samples: int, warmup: int) -> CompareResult:
    result = CompareResult()
    conn = RawConnection(server.host, server.port, headers)
    await conn.connect()
    try:
        made = await conn.request("POST", "/v1/pipelines", {"name": PIPELINE})
        if made.status not in (201, 409):
            raise RuntimeError(f"create pipeline: HTTP {made.status} {made.body[:200]!r}")
        a, b, expected = outputs()
        run_a = await _completed_run(conn, a, 0.5)
        run_b = await _completed_run(conn, b, 0.6)
        result.leaves = RECORDS * FIELDS
        path = f"/v1/runs/{run_a}/compare/{run_b}"
        for n in range(warmup + samples):
            started = time.perf_counter()
            response = await conn.request("GET", path)
            elapsed = (time.perf_counter() - started) * 1e3
            if response.status != 200:
                result.errors.append(f"HTTP {response.status} {response.body[:200]!r}")
                continue
            summary = response.json()["summary"]
            got = {key: summary[key] for key in expected}
            if got != expected:
                result.errors.append(f"counts {got} != {expected}")
                continue
            if n >= warmup:
                result.samples += 1
                result.times_ms.append(elapsed)
                result.response_bytes = len(response.body)
    finally:
        await conn.close()
    return result


def bench_compare(
    server: Server, headers: Headers, samples: int = 50, warmup: int = 5
) -> CompareResult:
    return asyncio.run(_bench(server, headers, samples, warmup))


def compare_rows(result: CompareResult | None, why: str) -> list[Row]:
    label = "compare two runs, 5,000-leaf outputs, p50"
    tail_label = "compare two runs, p90 / p99 / max"
    if result is None or not result.samples:
        reason = why if result is None or not result.errors else f"error: {result.errors[0]}"
        return [Row(label, "n/a", f"< {TARGET_MS:g} ms", "", None, reason), Row(tail_label, "n/a")]
    times = sorted(result.times_ms)
    p50 = percentile(times, 0.5)
    errors = f"; {len(result.errors)} errors: {result.errors[0][:100]}" if result.errors else ""
    note = (
        f"{result.samples} sequential GETs, {result.leaves:,} leaves per output (+200 only in b), "
        f"response {result.response_bytes / 1024:.0f} KiB, request written -> response read"
        f"{errors}"
    )
    tail = f"{percentile(times, 0.9):.1f} / {percentile(times, 0.99):.1f} / {times[-1]:.1f} ms"
    return [
        Row(
            label,
            f"{p50:.1f} ms",
            f"< {TARGET_MS:g} ms",
            "",
            not result.errors and p50 < TARGET_MS,
            note,
        ),
        Row(tail_label, tail),
    ]
