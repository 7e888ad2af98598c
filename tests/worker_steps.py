"""Step functions the embedded worker's tests call through ``python`` steps."""

import asyncio
from pathlib import Path
from typing import Any


def double(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
    ctx.log(f"doubling {input['n']}")
    ctx.metric("n", input["n"])
    return {"value": input["n"] * 2}


def count_calls(ctx: Any, input: dict[str, Any]) -> str:
    marker = Path(input["counter"])
    marker.write_text(marker.read_text() + "x" if marker.exists() else "x")
    return "counted"


async def wait_for_release(ctx: Any, input: dict[str, Any]) -> str:
    release = Path(input["release"])
    for _ in range(600):
        if await asyncio.to_thread(release.exists):
            return "released"
        await asyncio.sleep(0.05)
    raise TimeoutError("never released")


def explode(ctx: Any, input: dict[str, Any]) -> None:
    raise ValueError("no such region")


def fake_end(ctx: Any, input: dict[str, Any]) -> None:
    ctx.event("run.completed", {"status": "completed"})
