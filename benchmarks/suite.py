"""Orchestration: start each server in turn, run the selected benchmarks, collect numbers.

The bare app is measured first, then Runyard, each on a fresh data directory and port, with
the same load specs.  The runner-protocol benchmarks (claim latency, runner throughput) and
SSE run against Runyard only.  Agent token latency (``agents``) gets a Runyard server of its
own, started last, with the embedded worker on (it executes the agent turns); so do builds
(``builds``: the worker builds environments and runs steps in them, ``RUNYARD_BUILD_TOOL=pip``)
and each database of the observability benchmark (``observability``: SQLite, then
PostgreSQL).  A failure inside one benchmark is recorded and the suite moves on; a server that
does not start blocks only its own rows.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import (
    apis,
    bench_agents,
    bench_builds,
    bench_claim,
    bench_compare,
    bench_http,
    bench_observability,
    bench_runners,
    bench_sse,
    servers,
)
from benchmarks.loadgen import UNIQUE, LoadResult
from benchmarks.sdk_runner import sdk_runner_process

BENCHMARKS = (
    "create",
    "ingest",
    "get",
    "claim",
    "runners",
    "sdk",
    "sse",
    "rss",
    "auth",
    "agents",
    "compare",
    "observability",
    "builds",
)
LOAD_KEYS = ("create1", "create32", "get32", "ingest", "rss")
LoadBench = Callable[..., tuple[LoadResult, float]]


@dataclass(frozen=True)
class Options:
    """Everything the command line can change."""

    quick: bool = False
    only: frozenset[str] = frozenset(BENCHMARKS)
    target: str = "runyard"
    runyard_bin: Path = servers.DEFAULT_RUNYARD_BIN
    host: str = "127.0.0.1"
    bare_driver: str = "thread"
    headers: tuple[tuple[str, str], ...] = ()
    duration: float | None = None
    subscribers: int | None = None
    sse_procs: int = 2
    ingest_clients: int = 4
    ingest_batch: int = 100
    runner_procs: int = 4
    agent_turns: int | None = None
    agent_tokens: int | None = None
    agent_rate: float = 2000.0
    postgres_url: str = bench_observability.DEFAULT_POSTGRES_URL

    @property
    def load_seconds(self) -> float:
        return self.duration or (2.0 if self.quick else 10.0)

    @property
    def warmup(self) -> float:
        return 0.3 if self.quick else 1.0

    @property
    def sse_seconds(self) -> float:
        return self.duration or (2.0 if self.quick else 10.0)

    @property
    def sse_subscribers(self) -> int:
        return self.subscribers or (100 if self.quick else 1000)

    @property
    def claim_samples(self) -> int:
        return 50 if self.quick else 300

    @property
    def idle_seconds(self) -> float:
        return 1.0 if self.quick else 5.0

    @property
    def turns(self) -> int:
        return self.agent_turns or (10 if self.quick else 30)

    @property
    def tokens(self) -> int:
        return self.agent_tokens or (400 if self.quick else 1000)

    @property
    def observability_samples(self) -> int:
        return 10 if self.quick else 50

    @property
    def build_samples(self) -> int:
        return 1 if self.quick else 3

    @property
    def build_runs(self) -> int:
        return 10 if self.quick else 30


@dataclass
class Measurements:
    """What one server produced; missing keys were not selected or failed."""

    name: str
    load: dict[str, tuple[LoadResult, float]] = field(default_factory=dict)
    rss_fresh: int | None = None
    rss_after: int | None = None
    sse: bench_sse.SseResult | None = None
    claim: bench_claim.ClaimResult | None = None
    runners: bench_runners.RunnersResult | None = None
    sdk_runners: bench_runners.RunnersResult | None = None
    compare: bench_compare.CompareResult | None = None
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class SuiteResult:
    """Both servers' measurements plus why the target could not run, if it could not."""

    bare: Measurements | None
    target: Measurements | None
    target_name: str
    blocked: str | None = None
    seconds: float = 0.0
    agents: bench_agents.AgentsResult | None = None
    agents_error: str | None = None
    observability: list[bench_observability.ObservabilityResult] = field(default_factory=list)
    #: database -> why it was not measured
    observability_errors: dict[str, str] = field(default_factory=dict)
    builds: bench_builds.BuildsResult | None = None
    builds_error: str | None = None


def _attempt(m: Measurements, key: str, action: Callable[[], None]) -> None:
    """Call ``action()``; on failure store a one-line reason under ``key``."""
    try:
        action()
    except Exception as exc:
        m.errors[key] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
        traceback.print_exc()


def _measure(
    pool: Executor, server: servers.Server, api: apis.Api, opts: Options, is_target: bool
) -> Measurements:
    m = Measurements(server.name)
    headers = opts.headers if api is apis.RUNYARD else ()
    cfg = bench_http.LoadConfig(opts.load_seconds, opts.warmup, headers)

    def rss_fresh() -> None:
        m.rss_fresh = bench_http.idle_rss(server, api, headers, opts.idle_seconds)

    def load(key: str, fn: LoadBench, *args: int) -> None:
        def go() -> None:
            m.load[key] = fn(pool, server, api, cfg, *args)

        _progress(f"{server.name}: {key}")
        _attempt(m, key, go)

    if "rss" in opts.only:
        _attempt(m, "rss", rss_fresh)
    if "create" in opts.only:
        load("create1", bench_http.bench_create, 1)
        load("create32", bench_http.bench_create, 32)
    if "get" in opts.only:
        load("get32", bench_http.bench_get, 32)
    if "ingest" in opts.only:
        load("ingest", bench_http.bench_ingest, opts.ingest_clients, opts.ingest_batch)
    if is_target and "claim" in opts.only:
        _progress(f"{server.name}: claim ({opts.claim_samples} sequential claims)")

        def claim() -> None:
            m.claim = bench_claim.bench_claim(server, headers, opts.claim_samples)

        _attempt(m, "claim", claim)
    if is_target and "runners" in opts.only:
        _progress(f"{server.name}: runners ({opts.runner_procs} runner processes)")

        def runners() -> None:
            m.runners = bench_runners.bench_runners(
                server, headers, opts.runner_procs, opts.load_seconds, opts.warmup
            )

        _attempt(m, "runners", runners)
    if is_target and "sdk" in opts.only:
        _progress(f"{server.name}: sdk ({opts.runner_procs} SDK runner processes)")

        def sdk_runners() -> None:
            m.sdk_runners = bench_runners.bench_runners(
                server,
                headers,
                opts.runner_procs,
                opts.load_seconds,
                opts.warmup,
                process=sdk_runner_process,
                pipeline="bench-sdk-runners",
            )

        _attempt(m, "sdk", sdk_runners)
    if is_target and "compare" in opts.only:
        _progress(f"{server.name}: compare (two runs with 5,000-leaf outputs)")

        def compare() -> None:
            m.compare = bench_compare.bench_compare(server, headers, 20 if opts.quick else 50)

        _attempt(m, "compare", compare)
    if is_target and "sse" in opts.only:
        _progress(f"{server.name}: sse ({opts.sse_subscribers} subscribers)")

        def fan_out() -> None:
            m.sse = bench_sse.bench_sse(
                server,
                api,
                opts.sse_subscribers,
                opts.sse_procs,
                opts.sse_seconds,
                headers=headers,
            )

        _attempt(m, "sse", fan_out)
    if "rss" in opts.only:
        time.sleep(opts.idle_seconds)
        m.rss_after = server.rss_bytes()
    if is_target and "auth" in opts.only:  # last: its API key ends open mode on this server
        if "create1" not in m.load:
            load("create1", bench_http.bench_create, 1)
            load("create32", bench_http.bench_create, 32)
        _progress(f"{server.name}: create with an API key and Idempotency-Key")

        def keyed() -> None:
            secret = bench_http.make_api_key(server, headers)
            keyed_cfg = bench_http.LoadConfig(
                opts.load_seconds,
                opts.warmup,
                (
                    *(h for h in headers if h[0].lower() != "authorization"),
                    ("Authorization", f"Bearer {secret}"),
                    ("Idempotency-Key", UNIQUE.decode()),
                ),
            )
            for key, clients in (("create1_auth", 1), ("create32_auth", 32)):
                m.load[key] = bench_http.bench_create(pool, server, api, keyed_cfg, clients)

        _attempt(m, "auth", keyed)
    return m


def _progress(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def _with_server(
    pool: Executor,
    name: str,
    argv: list[str],
    data_dir: Path,
    port: int,
    api: apis.Api,
    opts: Options,
    is_target: bool,
) -> Measurements:
    _progress(f"starting {name}")
    server = servers.start_server(name, argv, data_dir, opts.host, port)
    try:
        return _measure(pool, server, api, opts, is_target)
    finally:
        server.stop()


def _agents(result: SuiteResult, opts: Options, data_dir: Path) -> None:
    """Agent token latency on a fresh Runyard server with its embedded worker."""
    _progress(
        f"starting runyard with its worker: agents ({opts.turns} turns x {opts.tokens} tokens"
        f" at {opts.agent_rate:,.0f} tokens/s)"
    )
    port = servers.free_port(opts.host)
    argv = servers.runyard_argv(opts.runyard_bin, opts.host, port, data_dir, worker=True)
    try:
        server = servers.start_server("runyard-worker", argv, data_dir, opts.host, port)
    except servers.ServerError as exc:
        result.agents_error = f"server did not start: {str(exc).splitlines()[0]}"
        return
    try:
        result.agents = bench_agents.bench_agents(
            server, opts.headers, opts.turns, opts.tokens, opts.agent_rate
        )
    except Exception as exc:
        result.agents_error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        traceback.print_exc()
    finally:
        server.stop()


def _builds(result: SuiteResult, opts: Options, data_dir: Path) -> None:
    """Build time and a ready environment's run start, on a fresh server with its worker."""
    _progress(
        f"starting runyard with its worker (pip builds): builds ({opts.build_samples} fresh "
        f"builds, {opts.build_runs} runs per pipeline)"
    )
    port = servers.free_port(opts.host)
    argv = servers.runyard_argv(opts.runyard_bin, opts.host, port, data_dir, worker=True)
    env = {"RUNYARD_BUILD_TOOL": "pip"}
    try:
        server = servers.start_server("runyard-builds", argv, data_dir, opts.host, port, env=env)
    except servers.ServerError as exc:
        result.builds_error = f"server did not start: {str(exc).splitlines()[0]}"
        return
    try:
        result.builds = bench_builds.bench_builds(
            server, opts.headers, opts.build_samples, opts.build_runs
        )
    except Exception as exc:
        result.builds_error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        traceback.print_exc()
    finally:
        server.stop()


def _observability(result: SuiteResult, opts: Options, data_dir: Path) -> None:
    """Observability latency at 100k runs, on a fresh server per database."""
    for database in ("sqlite", "postgres"):
        _progress(
            f"starting runyard on {database}: observability "
            f"({bench_observability.RUNS:,} runs, {opts.observability_samples} requests each)"
        )
        try:
            result.observability.append(
                bench_observability.bench_observability(
                    database,
                    data_dir / database,
                    runyard_bin=opts.runyard_bin,
                    host=opts.host,
                    headers=opts.headers,
                    postgres_url=opts.postgres_url,
                    samples=opts.observability_samples,
                )
            )
        except Exception as exc:
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
            result.observability_errors[database] = reason
            traceback.print_exc()


def run_suite(opts: Options) -> SuiteResult:
    """Measure the bare app (when a comparison is selected), then the target."""
    started = time.perf_counter()
    result = SuiteResult(bare=None, target=None, target_name=opts.target)
    if opts.target == "runyard":
        result.blocked = servers.probe_runyard(opts.runyard_bin)
    ctx = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(1, mp_context=ctx) as pool,
        tempfile.TemporaryDirectory(prefix="runyard-bench-") as tmp,
    ):
        if opts.only & {"create", "ingest", "get", "rss"}:
            port = servers.free_port(opts.host)
            argv = servers.bare_argv(opts.host, port, Path(tmp, "bare"), opts.bare_driver)
            try:
                result.bare = _with_server(
                    pool, "bare", argv, Path(tmp, "bare"), port, apis.BARE, opts, is_target=False
                )
            except servers.ServerError as exc:
                reason = f"bare app did not start: {str(exc).splitlines()[0]}"
                result.bare = Measurements("bare", errors=dict.fromkeys(LOAD_KEYS, reason))
        if result.blocked is None and opts.only - {"agents", "observability", "builds"}:
            port = servers.free_port(opts.host)
            data_dir = Path(tmp, opts.target)
            argv = servers.runyard_argv(opts.runyard_bin, opts.host, port, data_dir)
            try:
                result.target = _with_server(
                    pool, opts.target, argv, data_dir, port, apis.RUNYARD, opts, is_target=True
                )
            except servers.ServerError as exc:
                result.blocked = str(exc)
        if result.blocked is None and "agents" in opts.only:
            _agents(result, opts, Path(tmp, "agents"))
        if result.blocked is None and "builds" in opts.only:
            _builds(result, opts, Path(tmp, "builds"))
        if result.blocked is None and "observability" in opts.only:
            _observability(result, opts, Path(tmp, "observability"))
    result.seconds = time.perf_counter() - started
    return result
