"""Built-in step kinds the embedded worker executes: ``command`` and ``python``."""

import asyncio
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from runyard.events.schemas import EVENT_TYPE_PATTERN, RESERVED_PREFIXES
from runyard.events.service import NewEvent
from runyard.processes import run_process
from runyard.worker.buffer import EventBuffer


class StepFailed(Exception):
    """The step ran and failed; ``code`` becomes the run error's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.recorded = False  # True when the step's outcome is already on the run
        self.exit_code: int | None = None  # a process's, when its exit failed the step

    def error(self) -> dict[str, Any]:
        """The step's ``error`` as recorded on the run."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.exit_code is not None:
            error["exit_code"] = self.exit_code
        return error


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


@dataclass(frozen=True)
class StepPlace:
    """Where ``command`` and ``python`` steps run: a working directory, the variables of their
    processes, and the interpreter of the pipeline's environment (None: no environment, a
    ``python`` step is called in the server's own process)."""

    cwd: Path
    env: dict[str, str]
    python: str | None = None


def server_place(cwd: Path) -> StepPlace:
    """No environment: the server's own, where ``python`` is the interpreter running the
    server (DESIGN §15)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return StepPlace(cwd=cwd, env=env)


def step_env(place: StepPlace, ctx: "StepContext", extra: dict[str, Any]) -> dict[str, str]:
    return {
        **place.env,
        "RUNYARD_RUN_ID": ctx.run_id,
        "RUNYARD_STEP": ctx.step,
        "RUNYARD_OUTPUT_DIR": str(ctx.output_dir),
        **{str(k): str(v) for k, v in extra.items()},
    }


def console(ctx: "StepContext") -> Callable[[str, str], None]:
    def on_line(stream: str, text: str) -> None:
        ctx.buffer.put(NewEvent("console.line", {"stream": stream, "text": text}, step=ctx.step))

    return on_line


async def run_command(
    options: dict[str, Any], ctx: StepContext, place: StepPlace
) -> dict[str, Any]:
    """``with: {run: "<shell command>" | [argv...], env?, cwd?}``: lines become
    ``console.line`` events; a non-zero exit fails the step."""
    command = options.get("run")
    if isinstance(command, str):
        argv = ["/bin/sh", "-c", command]
    elif isinstance(command, list) and command and all(isinstance(a, str) for a in command):
        argv = list(command)
    else:
        raise StepFailed("invalid_step", "a command step needs `with.run`: a string or argv list")
    cwd = place.cwd / options["cwd"] if options.get("cwd") else place.cwd
    env = step_env(place, ctx, options.get("env") or {})
    try:
        code = await run_process(argv, cwd=cwd, env=env, on_line=console(ctx))
    except OSError as exc:
        raise StepFailed("command_not_started", f"{argv[0]}: {exc}") from exc
    if code != 0:
        failure = StepFailed("command_failed", f"exited with code {code}")
        failure.exit_code = code
        raise failure
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


async def run_python(options: dict[str, Any], ctx: StepContext, place: StepPlace) -> Any:
    """``with: {function: "module:function"}``, called as ``function(ctx, input)``; async
    functions are awaited, others run in a thread. The return value is the step output.
    In a pipeline's environment the function runs in that environment's interpreter
    (:func:`_hosted`)."""
    reference = str(options.get("function", ""))
    if place.python is not None:
        return await _hosted(reference, ctx, place)
    function = _load(reference)
    try:
        if inspect.iscoroutinefunction(function):
            return await function(ctx, ctx.input)
        return await asyncio.to_thread(function, ctx, ctx.input)
    except StepFailed:
        raise
    except Exception as exc:  # the function's own failure fails the step, with its message
        raise StepFailed("step_error", f"{type(exc).__name__}: {exc}") from exc


HOST = Path(__file__).with_name("step_host.py")


async def _hosted(reference: str, ctx: StepContext, place: StepPlace) -> Any:
    assert place.python is not None
    """Call the function in a child process of the environment's interpreter (:mod:`.step_host`):
    its prints are console lines, its ``ctx`` calls come back as events over a pipe."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise StepFailed(
            "invalid_step", f"`with.function` must be module:function, not {reference!r}"
        )
    job = {
        "function": reference,
        "run_id": ctx.run_id,
        "step": ctx.step,
        "attempt": ctx.attempt,
        "input": ctx.input,
        "require_approval": ctx.require_approval,
        "output_dir": str(ctx.output_dir),
    }
    outcome: dict[str, Any] = {}
    read_end, write_end = os.pipe()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024, loop=loop)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(read_end, "rb")
    )

    async def messages() -> None:
        while line := await reader.readline():
            message = orjson.loads(line)
            if "event" in message:
                _host_event(ctx, message["event"])
            else:
                outcome.update(message)

    env = {**step_env(place, ctx, {}), "RUNYARD_HOST_FD": str(write_end)}
    listening = asyncio.create_task(messages())
    try:
        try:
            code = await run_process(
                [place.python, str(HOST)],
                cwd=place.cwd,
                env=env,
                on_line=console(ctx),
                stdin=orjson.dumps(job),
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        await listening
    except OSError as exc:
        raise StepFailed("python_not_started", f"{place.python}: {exc}") from exc
    finally:
        listening.cancel()
        transport.close()
    if "result" in outcome:
        return outcome["result"]
    if "error" in outcome:
        error = outcome["error"]
        raise StepFailed(str(error.get("code", "step_error")), str(error.get("message", "")))
    failure = StepFailed("step_error", f"the step's interpreter exited with code {code}")
    failure.exit_code = code
    raise failure


def _host_event(ctx: StepContext, event: dict[str, Any]) -> None:
    """An event the hosted function emitted, checked as in the server's own process."""
    data = event.get("data")
    try:
        ctx.event(str(event.get("type")), data if isinstance(data, dict) else {"value": data})
    except ValueError as exc:
        ctx.log(f"event dropped: {exc}", level="warning")
