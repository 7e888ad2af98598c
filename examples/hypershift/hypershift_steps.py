"""Step functions of the HyperShift-style deploy pipeline (see README.md).

Each is called as ``function(ctx, input)`` by the embedded worker; ``ctx`` reports progress
into the run's event stream. They are deliberately small and deterministic: the point is the
shape of the pipeline (plan → build → vet → approve → operate → cost), not real deploys.
"""

import itertools
from typing import Any

FORBIDDEN = ("drop database", "disable auth", "rm -rf /")


def architect(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
    intent = input["user_intent"]
    words = intent["description"].lower().split()
    # "Deploy the checkout service" → checkout; else the last longer word
    named = [before for before, word in itertools.pairwise(words) if word == "service"]
    service = named[0] if named else next((w for w in reversed(words) if len(w) > 3), "app")
    ctx.log(f"planning {service} for {intent.get('target', 'staging')}")
    return {"service": service, "replicas": 3 if intent.get("target") == "production" else 1}


def builder(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
    ctx.log("building the image")
    ctx.metric("build_seconds", 42)
    return {"image": "registry.local/app:1.0.0"}


def sentinel(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
    """The veto: a risky intent fails the run here, before the approval gate, so no approver
    can wave it through."""
    description = input["user_intent"]["description"].lower()
    risky = [phrase for phrase in FORBIDDEN if phrase in description]
    if risky:
        raise PermissionError(f"sentinel veto: the intent asks to {risky[0]!r}")
    return {"verdict": "pass"}


def sre(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
    ctx.event("deploy.succeeded", {"target": input["user_intent"].get("target", "staging")})
    return {"health": "green"}


def finops(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
    cost = 0.12 * (3 if input["user_intent"].get("target") == "production" else 1)
    budget = input["user_intent"].get("budget_usd")
    ctx.metric("monthly_cost_usd", cost)
    return {"monthly_cost_usd": cost, "within_budget": budget is None or cost <= budget}
