"""Turn ``SuiteResult`` numbers into report rows with targets, ratios and verdicts.

Targets come from the project brief.  Ratios are Runyard / bare app for the
same load in the same invocation.  A load generator above 90 % of a core is
flagged "client-bound": the number is then a floor, not the server's limit.
"""

from __future__ import annotations

from benchmarks.bench_builds import builds_rows
from benchmarks.bench_compare import compare_rows
from benchmarks.bench_observability import observability_rows
from benchmarks.bench_sse import SseResult
from benchmarks.loadgen import LoadResult
from benchmarks.report import Row, rate, ratio
from benchmarks.suite import Measurements, Options, SuiteResult
from benchmarks.summary_agents import agents_rows
from benchmarks.summary_runners import claim_rows, runners_rows

MiB = 1024 * 1024
CLIENT_BOUND = 0.9


def _load(m: Measurements | None, key: str) -> tuple[LoadResult, float] | None:
    return None if m is None else m.load.get(key)


def _why(m: Measurements | None, key: str, blocked: str | None) -> str:
    if blocked:
        return f"not run: {blocked.splitlines()[0]}"
    if m is not None and key in m.errors:
        return f"error: {m.errors[key]}"
    return "not measured"


def _load_note(res: LoadResult, server_cpu: float, bare: LoadResult | None, items: bool) -> str:
    parts = [f"p50 {res.p50_ms:.2f} ms, p99 {res.p99_ms:.2f} ms"]
    if bare is not None:
        parts.append(f"bare {rate(bare.item_rate if items else bare.rate)}")
    parts.append(f"server CPU {server_cpu:.0%}, client CPU {res.client_cpu:.0%}")
    if res.client_cpu > CLIENT_BOUND:
        parts.append("client-bound")
    if res.errors:
        parts.append(f"{res.errors} errors: {res.error_samples[0][:80]}")
    return "; ".join(parts)


def _load_row(
    label: str, key: str, target: str, floor: float | None, result: SuiteResult, items: bool
) -> Row:
    got, bare = _load(result.target, key), _load(result.bare, key)
    bare_res = bare[0] if bare else None
    if got is None:
        note = _why(result.target, key, result.blocked)
        if bare_res is not None:
            value = bare_res.item_rate if items else bare_res.rate
            note = f"bare {rate(value)}; {note}"
        return Row(label, "n/a", target, "", None, note)
    res, server_cpu = got
    value = res.item_rate if items else res.rate
    reference = (bare_res.item_rate if items else bare_res.rate) if bare_res else 0.0
    if floor is not None:
        passed: bool | None = value >= floor
    else:
        passed = value >= 0.8 * reference if reference else None
    return Row(
        label,
        rate(value, " ev/s" if items else "/s"),
        target,
        ratio(value, reference),
        passed,
        _load_note(res, server_cpu, bare_res, items),
    )


def _auth_rows(result: SuiteResult) -> list[Row]:
    """Create with an API key and a fresh Idempotency-Key per request, against the same
    server's open-mode create measured just before (target: at least 80 % of it)."""
    rows = []
    for clients in (1, 32):
        label = f"create run + key + Idempotency-Key, {clients} client{'s' if clients > 1 else ''}"
        keyed, plain = (
            _load(result.target, f"create{clients}_auth"),
            _load(result.target, f"create{clients}"),
        )
        if keyed is None or plain is None:
            why = _why(result.target, "auth", result.blocked)
            rows.append(Row(label, "n/a", ">= 80% of no key", "", None, why))
            continue
        (res, server_cpu), reference = keyed, plain[0].rate
        errors = f"; {res.errors} errors: {res.error_samples[0][:80]}" if res.errors else ""
        note = (
            f"{ratio(res.rate, reference)} of {rate(reference)} without them (same server); "
            f"p50 {res.p50_ms:.2f} ms, p99 {res.p99_ms:.2f} ms; server CPU {server_cpu:.0%}{errors}"
        )
        passed = res.errors == 0 and res.rate >= 0.8 * reference
        rows.append(Row(label, rate(res.rate), ">= 80% of no key", "", passed, note))
    return rows


def _errors_row(result: SuiteResult) -> Row:
    runs = [_load(result.target, k) for k in ("create1", "create32")]
    measured = [r[0] for r in runs if r is not None]
    if not measured:
        return Row(
            "create run errors",
            "n/a",
            "0",
            "",
            None,
            _why(result.target, "create1", result.blocked),
        )
    errors = sum(r.errors for r in measured)
    total = sum(r.ok + r.errors for r in measured)
    samples = [s for r in measured for s in r.error_samples][:1]
    note = f"of {total:,} requests" + (f"; e.g. {samples[0][:100]}" if samples else "")
    return Row("create run errors", str(errors), "0", "", errors == 0, note)


def _sse_rows(sse: SseResult | None, opts: Options, why: str) -> list[Row]:
    subs = opts.sse_subscribers
    labels = (
        f"SSE fan-out delivery, {subs} subs",
        f"SSE append rate, {subs} subs",
        "SSE p99 commit->receipt",
    )
    if sse is None:
        targets = ("all exact", ">= 1,000 ev/s", "< 100 ms")
        return [
            Row(label, "n/a", t, "", None, why) for label, t in zip(labels, targets, strict=True)
        ]
    delivery = (
        f"{sse.published:,} events; connected {sse.connected}, ended {sse.ended}, "
        f"short {sse.short}, order errors {sse.order_errors}"
    )
    if sse.errors:
        delivery += f"; {sse.errors[0][:100]}"
    append = (
        f"1 runner connection, batches of 10 every 10 ms; publish p50 {sse.publish_p50_ms:.1f} ms,"
        f" p99 {sse.publish_p99_ms:.1f} ms; server CPU {sse.server_cpu:.0%}"
    )
    cpus = "+".join(f"{c:.0%}" for c in sse.client_cpu)
    lags = "/".join(f"{lag:.0f}" for lag in sse.client_lag_p99_ms)
    latency = (
        f"p50 {sse.p50_ms:.1f} ms, max {sse.max_ms:.0f} ms; "
        f"client CPU {cpus}, client loop lag p99 {lags} ms"
    )
    if any(c > CLIENT_BOUND for c in sse.client_cpu):
        latency += "; client-bound: latency includes client queueing"
    exact = sse.exact == subs and sse.published > 0
    return [
        Row(labels[0], f"{sse.exact}/{subs} exact", "all exact", "", exact, delivery),
        Row(
            labels[1],
            rate(sse.publish_rate, " ev/s"),
            ">= 1,000 ev/s",
            "",
            sse.publish_rate >= 0.98 * sse.target_rate,
            append,
        ),
        Row(
            labels[2],
            f"{sse.p99_ms:.1f} ms",
            "< 100 ms",
            "",
            sse.p99_ms < 100 and sse.exact > 0,
            latency,
        ),
    ]


def _rss_row(result: SuiteResult) -> Row:
    target, bare = result.target, result.bare
    bare_rss = bare.rss_fresh if bare else None
    if target is None or target.rss_fresh is None:
        note = _why(target, "rss", result.blocked)
        if bare_rss:
            note = f"bare {bare_rss / MiB:.0f} MiB; {note}"
        return Row("idle RSS", "n/a", "<= 120 MiB", "", None, note)
    rss = target.rss_fresh / MiB
    note = (
        f"after startup + a few requests + idle; bare {bare_rss / MiB:.0f} MiB" if bare_rss else ""
    )
    if target.rss_after:
        note += f"; after the load benchmarks {target.rss_after / MiB:.0f} MiB"
    reference = bare_rss / MiB if bare_rss else 0.0
    return Row("idle RSS", f"{rss:.0f} MiB", "<= 120 MiB", ratio(rss, reference), rss <= 120, note)


def build_rows(result: SuiteResult, opts: Options) -> list[Row]:
    """All rows for the selected benchmarks, in a fixed order."""
    rows: list[Row] = []
    if "create" in opts.only:
        rows.append(_load_row("create run, 1 client", "create1", ">= 1,000/s", 1000, result, False))
        rows.append(
            _load_row("create run, 32 clients", "create32", ">= 1,500/s", 1500, result, False)
        )
        rows.append(_errors_row(result))
    if "auth" in opts.only:
        rows.extend(_auth_rows(result))
    if "ingest" in opts.only:
        label = f"event ingest, batch {opts.ingest_batch}, {opts.ingest_clients} clients"
        rows.append(_load_row(label, "ingest", ">= 80% of bare", None, result, True))
    if "get" in opts.only:
        rows.append(_load_row("get run, 32 clients", "get32", ">= 5,000/s", 5000, result, False))
    target = result.target
    if "claim" in opts.only:
        why = _why(target, "claim", result.blocked)
        rows.extend(claim_rows(target.claim if target else None, opts.claim_samples, why))
    if "runners" in opts.only:
        why = _why(target, "runners", result.blocked)
        rows.extend(runners_rows(target.runners if target else None, opts.runner_procs, why))
    if "sdk" in opts.only:
        why = _why(target, "sdk", result.blocked)
        sdk = target.sdk_runners if target else None
        rows.extend(runners_rows(sdk, opts.runner_procs, why, sdk=True))
    if "sse" in opts.only:
        rows.extend(
            _sse_rows(target.sse if target else None, opts, _why(target, "sse", result.blocked))
        )
    if "compare" in opts.only:
        why = _why(target, "compare", result.blocked)
        rows.extend(compare_rows(target.compare if target else None, why))
    if "observability" in opts.only:
        why = dict(result.observability_errors)
        if result.blocked:
            why = dict.fromkeys(
                ("sqlite", "postgres"), f"not run: {result.blocked.splitlines()[0]}"
            )
        rows.extend(observability_rows(result.observability, why))
    if "rss" in opts.only:
        rows.append(_rss_row(result))
    if "agents" in opts.only:
        why = result.agents_error or (
            f"not run: {result.blocked.splitlines()[0]}" if result.blocked else "not measured"
        )
        rows.extend(agents_rows(result.agents, why))
    if "builds" in opts.only:
        why = result.builds_error or (
            f"not run: {result.blocked.splitlines()[0]}" if result.blocked else "not measured"
        )
        rows.extend(builds_rows(result.builds, why))
    return rows
