"""Command line: ``python -m benchmarks [--quick] [--only NAME] ...`` from the repo root."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
from pathlib import Path

from benchmarks import servers
from benchmarks.bench_observability import DEFAULT_POSTGRES_URL
from benchmarks.report import render
from benchmarks.suite import BENCHMARKS, Options, run_suite
from benchmarks.summary import build_rows


def parse_args(argv: list[str] | None = None) -> tuple[Options, Path | None]:
    """Options from the command line, and where to write JSON (if anywhere)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark `runyard serve` against a bare FastAPI + SQLite app.",
    )
    parser.add_argument("--quick", action="store_true", help="2 s runs, 100 SSE subscribers")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these benchmarks (repeatable or comma-separated): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--runyard-bin", type=Path, default=servers.DEFAULT_RUNYARD_BIN)
    parser.add_argument("--bare-driver", choices=("thread", "inline"), default="thread")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra header on every request to the target (e.g. auth)",
    )
    parser.add_argument("--duration", type=float, help="seconds per load/SSE benchmark")
    parser.add_argument("--subscribers", type=int, help="SSE subscribers (default 1000, quick 100)")
    parser.add_argument("--sse-procs", type=int, default=2, choices=(1, 2, 3, 4))
    parser.add_argument("--ingest-clients", type=int, default=4)
    parser.add_argument(
        "--runner-procs", type=int, default=4, choices=range(1, 9), help="runner processes"
    )
    parser.add_argument("--agent-turns", type=int, help="timed agent turns (default 30, quick 10)")
    parser.add_argument(
        "--agent-tokens", type=int, help="tokens per agent turn (default 1000, quick 400)"
    )
    parser.add_argument(
        "--agent-rate", type=float, default=2000.0, help="fake model tokens/s (default 2000)"
    )
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="PostgreSQL of the observability benchmark (a fresh schema, dropped after; "
        "default $RUNYARD_BENCH_POSTGRES_URL or postgres@127.0.0.1:5432/test)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    only = set(BENCHMARKS)
    if args.only:
        only = {name.strip() for item in args.only for name in item.split(",") if name.strip()}
        unknown = only - set(BENCHMARKS)
        if unknown:
            parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {BENCHMARKS}")
    headers: list[tuple[str, str]] = []
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep:
            parser.error(f"--header needs 'NAME: VALUE', got {item!r}")
        headers.append((name.strip(), value.strip()))
    return Options(
        quick=args.quick,
        only=frozenset(only),
        runyard_bin=args.runyard_bin,
        bare_driver=args.bare_driver,
        headers=tuple(headers),
        duration=args.duration,
        subscribers=args.subscribers,
        sse_procs=args.sse_procs,
        ingest_clients=args.ingest_clients,
        runner_procs=args.runner_procs,
        agent_turns=args.agent_turns,
        agent_tokens=args.agent_tokens,
        agent_rate=args.agent_rate,
        postgres_url=args.postgres_url,
    ), args.json


def _raise_fd_limit(wanted: int = 8192) -> None:
    """1,000 SSE sockets need more than the common 1,024 default (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def main(argv: list[str] | None = None) -> int:
    """Run the suite and print the table; exit 1 when any verdict is FAIL."""
    opts, json_path = parse_args(argv)
    _raise_fd_limit()
    result = run_suite(opts)
    rows = build_rows(result, opts)
    mode = "quick" if opts.quick else "full"
    title = (
        f"Runyard benchmarks ({mode}; target {result.target_name}; bare driver "
        f"{opts.bare_driver}; {os.cpu_count()} cores; Python {platform.python_version()}; "
        f"{result.seconds:.0f} s)"
    )
    print()
    print(render(rows, title))
    if result.blocked:
        print(f"\ntarget blocked: {result.blocked}")
    if json_path is not None:
        json_path.write_text(json.dumps([row.as_dict() for row in rows], indent=2))
    return 1 if any(row.passed is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
