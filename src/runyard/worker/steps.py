"""Built-in step kinds the embedded worker executes: ``command`` and ``python``."""

import asyncio
import contextlib
import importlib
import inspect
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runyard.events.schemas import EVENT_TYPE_PATTERN, RESERVED_PREFIXES
from runyard.events.service import NewEvent
from runyard.worker.buffer import EventBuffer


class StepFailed(Exception):
    """The step ran and failed; ``code`` becomes the run error's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.recorded = False  # True when the step's outcome is already on the run


@dataclass
class StepContext:
    """What a ``python`` step function receives as ``ctx``."""

    run_id: str
    step: str
    attempt: int
    input: dict[str, Any]
    require_approval: bool
    output_dir: Path
    buffer: EventBuffer = field(repr=False)

    def log(self, message: str, level: str = "info") -> None:
        self.event("log", {"level": level, "message": message})

    def event(self, type: str, data: dict[str, Any] | None = None) -> None:
        if not EVENT_TYPE_PATTERN.match(type) or len(type) > 64:
            raise ValueError(f"event type {type!r} is not dotted lowercase")
        if type.startswith(RESERVED_PREFIXES):
            raise ValueError(f"event type {type!r} is reserved for the server")
        self.buffer.put(NewEvent(type, data or {}, step=self.step))

    def metric(self, name: str, value: float) -> None:
        self.event("metric", {"name": name, "value": value})


async def run_command(options: dict[str, Any], ctx: StepContext, cwd: Path) -> dict[str, Any]:
    """``with: {run: "<shell command>" | [argv...], env?, cwd?}``: lines become
    ``console.line`` events; a non-zero exit fails the step."""
    command = options.get("run")
    if isinstance(command, str):
        argv = ["/bin/sh", "-c", command]
    elif isinstance(command, list) and command and all(isinstance(a, str) for a in command):
        argv = list(command)
    else:
        raise StepFailed("invalid_step", "a command step needs `with.run`: a string or argv list")
    extra_env = {str(k): str(v) for k, v in (options.get("env") or {}).items()}
    env = {
        **os.environ,
        "RUNYARD_RUN_ID": ctx.run_id,
        "RUNYARD_STEP": ctx.step,
        "RUNYARD_OUTPUT_DIR": str(ctx.output_dir),
        **extra_env,
    }
    # `python` in a command means the interpreter running the server (DESIGN §15)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd / options["cwd"]) if options.get("cwd") else str(cwd),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, so a cancel kills its children too
        )
    except OSError as exc:
        raise StepFailed("command_not_started", f"{argv[0]}: {exc}") from exc

    async def pump(stream: asyncio.StreamReader | None, name: str) -> None:
        assert stream is not None
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip("\n")
            ctx.buffer.put(NewEvent("console.line", {"stream": name, "text": text}, step=ctx.step))

    try:
        await asyncio.gather(pump(process.stdout, "stdout"), pump(process.stderr, "stderr"))
        code = await process.wait()
    except asyncio.CancelledError:  # timeout or cancel: the whole process group goes
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    if code != 0:
        raise StepFailed("command_failed", f"exited with code {code}")
    return {"exit_code": code}


def _load(reference: str) -> Callable[..., Any]:
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise StepFailed(
            "invalid_step", f"`with.function` must be module:function, not {reference!r}"
        )
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise StepFailed("function_not_found", f"{reference}: {exc}") from exc
    if not callable(function):
        raise StepFailed("function_not_found", f"{reference} is not callable")
    return function  # type: ignore[no-any-return]


async def run_python(options: dict[str, Any], ctx: StepContext) -> Any:
    """``with: {function: "module:function"}``, called as ``function(ctx, input)``; async
    functions are awaited, others run in a thread. The return value is the step output."""
    function = _load(str(options.get("function", "")))
    try:
        if inspect.iscoroutinefunction(function):
            return await function(ctx, ctx.input)
        return await asyncio.to_thread(function, ctx, ctx.input)
    except StepFailed:
        raise
    except Exception as exc:  # the function's own failure fails the step, with its message
        raise StepFailed("step_error", f"{type(exc).__name__}: {exc}") from exc
