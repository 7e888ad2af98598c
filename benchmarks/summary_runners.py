"""Report rows of the runner-protocol benchmarks (Runyard only: no bare-app comparison)."""

from __future__ import annotations

from benchmarks.bench_claim import ClaimResult
from benchmarks.bench_runners import RunnersResult
from benchmarks.report import Row, rate

CLIENT_BOUND = 0.9
CLAIM_TARGETS = (("p50", "< 10 ms", 10.0), ("p99", "< 50 ms", 50.0))
RUNS_TARGET = 300.0


def claim_rows(claim: ClaimResult | None, samples: int, why: str) -> list[Row]:
    """p50 and p99 of queued -> claimed, each against its target."""
    labels = [f"queued -> claimed {name}" for name, _, _ in CLAIM_TARGETS]
    if claim is None:
        return [
            Row(label, "n/a", target, "", None, why)
            for label, (_, target, _) in zip(labels, CLAIM_TARGETS, strict=True)
        ]
    ok = claim.samples > 0 and claim.errors == 0
    common = (
        f"{claim.samples}/{samples} sequential claims, long-poll 10 s; "
        f"from create request sent to claim response received"
    )
    errors = f"; {claim.errors} errors: {claim.error_samples[0][:100]}" if claim.errors else ""
    notes = [
        f"{common}; from create response p50 {claim.after_create_p50_ms:.2f} ms{errors}",
        (
            f"max {claim.max_ms:.1f} ms; from create response p99 "
            f"{claim.after_create_p99_ms:.2f} ms; server CPU {claim.server_cpu:.0%}, "
            f"client CPU {claim.client_cpu:.0%}{errors}"
        ),
    ]
    values = (claim.p50_ms, claim.p99_ms)
    return [
        Row(label, f"{value:.2f} ms", target, "", ok and value < limit, note)
        for label, (_, target, limit), value, note in zip(
            labels, CLAIM_TARGETS, values, notes, strict=True
        )
    ]


def runners_rows(
    runners: RunnersResult | None, procs: int, why: str, sdk: bool = False
) -> list[Row]:
    """Completed runs/s and the errors of a runner-throughput benchmark: raw protocol
    runners, or (``sdk``) the Python SDK's ``Runner`` with a trivial handler."""
    kind = "SDK runner" if sdk else "runner"
    label = f"runs completed/s, {procs} {kind} processes"
    errors_label = f"{kind} loop errors"
    if runners is None:
        return [
            Row(label, "n/a", f">= {RUNS_TARGET:,.0f}/s", "", None, why),
            Row(errors_label, "n/a", "0", "", None, why),
        ]
    cpus = "+".join(f"{c:.0%}" for c in runners.runner_cpu)
    cycle = (
        "handler returns {'ok': 1}"
        if sdk
        else f"cycle p50 {runners.cycle_p50_ms:.2f} ms, p99 {runners.cycle_p99_ms:.2f} ms"
    )
    note = (
        f"claim (wait 1 s) -> status completed; {cycle}; "
        f"queue depth mean {runners.depth_mean:.0f}, min {runners.depth_min}; "
        f"server CPU {runners.server_cpu:.0%}, runner CPU {cpus}, "
        f"producer CPU {runners.producer_cpu:.0%}"
    )
    if any(c > CLIENT_BOUND for c in [*runners.runner_cpu, runners.producer_cpu]):
        note += "; client-bound"
    errors_note = (
        f"{runners.completed_total:,} completed in all, {runners.created:,} created, "
        f"{runners.empty_claims} empty claims (204)"
    )
    if runners.error_samples:
        errors_note += f"; e.g. {runners.error_samples[0][:100]}"
    return [
        Row(
            label,
            rate(runners.rate),
            f">= {RUNS_TARGET:,.0f}/s",
            "",
            runners.rate >= RUNS_TARGET,
            note,
        ),
        Row(errors_label, str(runners.errors), "0", "", runners.errors == 0, errors_note),
    ]
