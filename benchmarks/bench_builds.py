"""Builds: the example environment's build time, and what a ready environment adds to a run.

Method (against ``runyard serve`` with its embedded worker and ``RUNYARD_BUILD_TOOL=pip``;
sequential, in the orchestrating process, one keep-alive connection):
1. Two pipelines with the same single step (``first``: a ``command`` step running ``true``):
   ``bench-builds-env`` with docs/builds.md's environment (local package ``greeter`` from
   its bundle, ``FLAVOUR=mint``; the bundle is uploaded as a zip) and ``bench-builds-plain``
   without one.
2. ``builds`` fresh builds of the environment (``force: true``), one after another: the
   build's ``duration_ms``, and the wall time from the POST sent to ``GET /v1/builds/{id}``
   (polled every 20 ms) saying ``ready``. Then one build without ``force``: it must answer
   ``ready`` and ``reused`` at once.
3. ``warmup`` untimed runs of each pipeline, then ``runs`` timed ones, alternating between
   the two: create, poll ``GET /v1/runs/{id}`` every 20 ms until it ends (60 s bound), read
   its events. Start -> first step = the ``step.started`` event of ``first`` minus the
   ``run.started`` event (event times have millisecond resolution). For the environment's
   runs the ``build`` step's events split it: run.started -> build started -> build
   completed -> first started.
"""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from benchmarks.httpraw import RawConnection, Response
from benchmarks.loadgen import percentile
from benchmarks.report import Row
from benchmarks.servers import Server

ENV_PIPELINE, PLAIN_PIPELINE = "bench-builds-env", "bench-builds-plain"
ENVIRONMENT = {"packages": ["greeter"], "env": {"FLAVOUR": "mint"}}
STEPS = [{"name": "first", "uses": "command", "with": {"run": "true"}}]
TARGET_MS = 50.0
BUILD_TIMEOUT, RUN_TIMEOUT, POLL = 600.0, 60.0, 0.02
PHASES = ("run.started -> build started", "build started -> completed", "build -> first started")
#: docs/builds.md's package ``greeter`` (its function trimmed: ``first`` never imports it)
GREETER = {
    "greeter/pyproject.toml": b"""[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "greeter"
version = "1.0.0"
""",
    "greeter/src/greeter/__init__.py": b"""def hello(ctx, input):
    return {"greeting": "Hello, " + input["name"]}
""",
}
Headers = tuple[tuple[str, str], ...]


@dataclass
class BuildsResult:
    builds: int
    runs: int
    build_ms: list[float] = field(default_factory=list)  # the build's duration_ms
    build_wall_ms: list[float] = field(default_factory=list)  # POST sent -> seen ready
    post_ms: list[float] = field(default_factory=list)  # POST sent -> answered (queued)
    reuse_ms: float | None = None  # a build of the ready environment, POST -> answer
    reused: bool = False
    #: "env" / "plain" -> run.started -> first step.started (events), per run
    start_ms: dict[str, list[float]] = field(default_factory=dict)
    #: the same from the run resource (started_at, steps[first].started_at)
    resource_ms: dict[str, list[float]] = field(default_factory=dict)
    phases_ms: dict[str, list[float]] = field(default_factory=dict)  # environment runs only
    errors: list[str] = field(default_factory=list)


def bundle_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in GREETER.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _ms(raw: str) -> float:
    return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() * 1e3


async def _expect(conn: RawConnection, method: str, path: str, body: Any, status: int) -> Any:
    response: Response = await conn.request(method, path, body)
    if response.status != status:
        raise RuntimeError(f"{method} {path}: HTTP {response.status} {response.body[:300]!r}")
    return response.json()


async def _setup(conn: RawConnection) -> str:
    """Both pipelines and the bundle; the environment pipeline's id."""
    await _expect(conn, "POST", "/v1/pipelines", {"name": PLAIN_PIPELINE, "steps": STEPS}, 201)
    made = {"name": ENV_PIPELINE, "environment": ENVIRONMENT, "steps": STEPS}
    pipeline_id = str((await _expect(conn, "POST", "/v1/pipelines", made, 201))["id"])
    body = bundle_zip()
    lines = [f"POST /v1/pipelines/{pipeline_id}/bundle HTTP/1.1", f"Host: {conn.host}:{conn.port}"]
    lines += [f"{name}: {value}" for name, value in conn.headers]
    lines += ["Content-Type: application/zip", f"Content-Length: {len(body)}"]
    answer = await conn.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    if answer.status != 201:
        raise RuntimeError(f"upload bundle: HTTP {answer.status} {answer.body[:300]!r}")
    return pipeline_id


async def _build(conn: RawConnection, pipeline_id: str, result: BuildsResult, n: int) -> None:
    """One fresh build, polled until it ends."""
    sent = time.perf_counter()
    path = f"/v1/pipelines/{pipeline_id}/builds"
    build = await _expect(conn, "POST", path, {"force": True}, 201)
    result.post_ms.append((time.perf_counter() - sent) * 1e3)
    deadline = sent + BUILD_TIMEOUT
    while build["status"] in ("queued", "building") and time.perf_counter() < deadline:
        await asyncio.sleep(POLL)
        build = await _expect(conn, "GET", f"/v1/builds/{build['id']}", None, 200)
    if build["status"] != "ready" or build["reused"]:
        reused = " (reused)" if build["reused"] else ""
        result.errors.append(f"build {n}: {build['status']}{reused} {build.get('error')}")
        return
    result.build_wall_ms.append((time.perf_counter() - sent) * 1e3)
    result.build_ms.append(float(build["duration_ms"]))


async def _run(conn: RawConnection, pipeline: str, n: int) -> tuple[dict[str, Any], list[Any]]:
    """Create a run, wait for it to end; the run and its events."""
    run = await _expect(conn, "POST", "/v1/runs", {"pipeline": pipeline, "input": {"n": n}}, 201)
    deadline = time.perf_counter() + RUN_TIMEOUT
    while run["status"] not in ("completed", "failed", "cancelled", "rejected"):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"run {run['id']} still {run['status']} after {RUN_TIMEOUT:.0f} s")
        await asyncio.sleep(POLL)
        run = await _expect(conn, "GET", f"/v1/runs/{run['id']}", None, 200)
    page = await _expect(conn, "GET", f"/v1/runs/{run['id']}/events?limit=1000", None, 200)
    return run, page["data"]


def _score(result: BuildsResult, kind: str, run: dict[str, Any], events: list[Any]) -> None:
    if run["status"] != "completed":
        result.errors.append(f"{kind} run {run['id']}: {run['status']} {run.get('error')}")
        return
    times: dict[tuple[str, str | None], float] = {}
    for env in events:
        times.setdefault((env["type"], env["step"]), _ms(env["time"]))
    begun, first = times.get(("run.started", None)), times.get(("step.started", "first"))
    steps = {step["name"]: step for step in run["steps"]}
    if begun is None or first is None or "first" not in steps:
        result.errors.append(f"{kind} run {run['id']}: no run.started or first step.started")
        return
    result.start_ms.setdefault(kind, []).append(first - begun)
    resource = _ms(steps["first"]["started_at"]) - _ms(run["started_at"])
    result.resource_ms.setdefault(kind, []).append(resource)
    if kind == "env":
        build = steps.get("build") or {}
        if not (build.get("output") or {}).get("reused"):
            result.errors.append(f"run {run['id']}: build step {build.get('output')}")
        marks = [
            begun,
            times.get(("step.started", "build"), begun),
            times.get(("step.completed", "build"), begun),
            first,
        ]
        for label, a, b in zip(PHASES, marks, marks[1:], strict=False):
            result.phases_ms.setdefault(label, []).append(b - a)


async def _bench(server: Server, headers: Headers, result: BuildsResult, warmup: int) -> None:
    conn = RawConnection(server.host, server.port, headers)
    await conn.connect()
    try:
        pipeline_id = await _setup(conn)
        for n in range(1, result.builds + 1):
            await _build(conn, pipeline_id, result, n)
        sent = time.perf_counter()
        path = f"/v1/pipelines/{pipeline_id}/builds"
        again = await _expect(conn, "POST", path, {}, 201)
        result.reuse_ms = (time.perf_counter() - sent) * 1e3
        result.reused = again["status"] == "ready" and bool(again["reused"])
        if not result.reused:
            result.errors.append(f"second build: {again['status']}, reused {again['reused']}")
        for n in range(warmup + result.runs):
            for kind, pipeline in (("env", ENV_PIPELINE), ("plain", PLAIN_PIPELINE)):
                run, events = await _run(conn, pipeline, n)
                if n >= warmup:
                    _score(result, kind, run, events)
    finally:
        await conn.close()


def bench_builds(
    server: Server, headers: Headers = (), builds: int = 3, runs: int = 30, warmup: int = 2
) -> BuildsResult:
    """Run the benchmark against a running server with its embedded worker (module doc)."""
    result = BuildsResult(builds=builds, runs=runs)
    asyncio.run(_bench(server, headers, result, warmup))
    return result


def _q(values: list[float], q: float) -> float:
    return percentile(sorted(values), q)


def builds_rows(result: BuildsResult | None, why: str) -> list[Row]:
    """Build time (informational) and the start overhead of a ready environment (< 50 ms)."""
    labels = (
        "build of the example environment, p50 / max",
        "run start -> first step, ready environment, p50 / p90",
        "run start -> first step, no environment, p50 / p90",
        "run start added by a ready environment, p50",
    )
    targets = ("report", "", "", f"< {TARGET_MS:g} ms")
    env, plain = (result.start_ms.get(k, []) for k in ("env", "plain")) if result else ([], [])
    if result is None or not result.build_ms or not env or not plain:
        reason = why if result is None or not result.errors else f"error: {result.errors[0]}"
        return [
            Row(label, "n/a", t, "", None, reason) for label, t in zip(labels, targets, strict=True)
        ]
    errors = f"; {len(result.errors)} errors: {result.errors[0][:100]}" if result.errors else ""
    walls, posts = result.build_wall_ms, result.post_ms
    build_note = (
        f"duration_ms of {len(result.build_ms)}/{result.builds} fresh builds (force, pip, local "
        f"package from the bundle); POST -> ready p50 {_q(walls, 0.5):.0f} ms, max "
        f"{max(walls):.0f} ms; POST answered in {posts[0]:.0f} ms the first time"
        f"{f', then p50 {_q(posts[1:], 0.5):.0f} ms' if posts[1:] else ''}; a build of the "
        f"ready one answered in "
        f"{result.reuse_ms or 0:.1f} ms (reused: {result.reused}){errors}"
    )

    def run_row(label: str, kind: str, times: list[float]) -> Row:
        resource = result.resource_ms.get(kind, []) if result else []
        note = (
            f"{len(times)} sequential runs (events run.started -> step.started); from the run's "
            f"started_at p50 {_q(resource, 0.5):.1f} ms; max {max(times):.0f} ms"
        )
        return Row(label, f"{_q(times, 0.5):.1f} / {_q(times, 0.9):.1f} ms", "", "", None, note)

    added = _q(env, 0.5) - _q(plain, 0.5)
    phases = ", ".join(f"{k} {_q(v, 0.5):.1f}" for k, v in result.phases_ms.items())
    added_note = f"difference of the p50s; environment runs p50 (ms): {phases}{errors}"
    passed = not result.errors and added < TARGET_MS
    build = f"{_q(result.build_ms, 0.5):,.0f} / {max(result.build_ms):,.0f} ms"
    return [
        Row(labels[0], build, targets[0], "", None, build_note),
        run_row(labels[1], "env", env),
        run_row(labels[2], "plain", plain),
        Row(labels[3], f"{added:.1f} ms", targets[3], "", passed, added_note),
    ]
