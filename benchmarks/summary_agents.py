"""Report rows of the agent token latency benchmark (Runyard only: no bare-app comparison)."""

from __future__ import annotations

from collections import Counter

from benchmarks.bench_agents import AgentsResult
from benchmarks.loadgen import percentile
from benchmarks.report import Row, rate

FIRST_TOKEN_TARGET_MS = 5.0
LABELS = (
    "agent first token -> SSE, p50",
    "agent first token -> SSE, p90 / p99 / max",
    "agent per-token -> SSE, p50",
    "agent per-token -> SSE, p90 / p99 / max",
    "agent tokens/s, model -> SSE",
)
TARGETS = (f"< {FIRST_TOKEN_TARGET_MS:g} ms", "", "", "", "")


def _q(values: list[float], q: float) -> float:
    return percentile(sorted(values), q)


def _tail(values: list[float]) -> str:
    return f"{_q(values, 0.9):.1f} / {_q(values, 0.99):.1f} / {max(values, default=0.0):.1f} ms"


def agents_rows(agents: AgentsResult | None, why: str) -> list[Row]:
    """First-token p50 against the 5 ms target; the rest informational."""
    if agents is None or not agents.ok_turns:
        reason = why
        if agents is not None and agents.errors:
            reason = f"no turn counted: {agents.errors[0][:120]}"
        return [
            Row(label, "n/a", t, "", None, reason) for label, t in zip(LABELS, TARGETS, strict=True)
        ]
    errors = f"; {len(agents.errors)} errors: {agents.errors[0][:100]}" if agents.errors else ""
    first, tokens = agents.first_ms, agents.token_ms
    gaps = [gap for gap, _ in agents.gaps_before_first]
    before = Counter(event for _, event in agents.gaps_before_first).most_common(1)
    before_type = before[0][0] if before else "?"
    first_note = (
        f"{agents.ok_turns}/{agents.turns} turns x {agents.tokens:,} tokens at "
        f"{agents.rate:,.0f} tokens/s; model -> event written p50 "
        f"{_q(agents.first_write_ms, 0.5):.1f} ms, then -> subscriber p50 "
        f"{_q(first, 0.5) - _q(agents.first_write_ms, 0.5):.1f} ms{errors}"
    )
    first_tail = (
        f"the stream's previous write ({before_type}) came p50 {_q(gaps, 0.5):.1f} ms "
        f"(min {min(gaps, default=0.0):.1f}) before the first token"
    )
    token_note = (
        f"{len(tokens):,} tokens, frame receipt - the fake's send time, matched by order; "
        f"model -> event written p50 {_q(agents.token_write_ms, 0.5):.1f} ms"
    )
    token_tail = (
        f"model -> event written p99 {_q(agents.token_write_ms, 0.99):.1f} ms; SSE writes "
        f"with tokens per turn p50 {_q([float(n) for n in agents.reads_per_turn], 0.5):.0f}"
    )
    throughput = (
        f"tokens / (first sent -> last received), p50 of turns (min "
        f"{min(agents.delivered_rates):,.0f}); fake sent p50 "
        f"{_q(agents.sent_rates, 0.5):,.0f}/s; turn (message posted -> run.completed) p50 "
        f"{_q(agents.durations_ms, 0.5):.0f} ms, posted -> first token p50 "
        f"{_q(agents.to_first_ms, 0.5):.0f} ms; server CPU {agents.server_cpu:.0%}"
    )
    first_p50 = _q(first, 0.5)
    return [
        Row(
            LABELS[0],
            f"{first_p50:.1f} ms",
            TARGETS[0],
            "",
            not agents.errors and first_p50 < FIRST_TOKEN_TARGET_MS,
            first_note,
        ),
        Row(LABELS[1], _tail(first), "", "", None, first_tail),
        Row(LABELS[2], f"{_q(tokens, 0.5):.1f} ms", "", "", None, token_note),
        Row(LABELS[3], _tail(tokens), "", "", None, token_tail),
        Row(LABELS[4], rate(_q(agents.delivered_rates, 0.5)), "", "", None, throughput),
    ]
