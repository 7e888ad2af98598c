"""Runs one ``python`` step inside a pipeline's environment (DESIGN §7).

The embedded worker starts this file with the environment's own interpreter, which may be
another Python than the server's and has none of Runyard installed: it imports nothing but the
standard library and the step's module. The job arrives as JSON on stdin; events and the
outcome go back as JSON lines on the file descriptor named by ``RUNYARD_HOST_FD``, while what
the function prints stays on stdout and stderr (the step's console lines).
"""

from __future__ import annotations  # the environment's Python may be older than 3.9

import asyncio
import inspect
import json
import os
import sys
import traceback
from collections.abc import Callable
from importlib import import_module
from typing import Any

RESERVED = ("run.", "step.", "approval.", "build.", "stream.")


class Context:
    """What the step function receives as ``ctx`` (as in the server's own process)."""

    def __init__(self, job: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
        self.run_id = job["run_id"]
        self.step = job["step"]
        self.attempt = job["attempt"]
        self.input = job["input"]
        self.require_approval = job["require_approval"]
        self.output_dir = job["output_dir"]
        self._send = send

    def log(self, message: Any, level: str = "info") -> None:
        self.event("log", {"level": level, "message": str(message)})

    def event(self, type: str, data: Any = None) -> None:
        if not isinstance(type, str) or type.startswith(RESERVED):
            raise ValueError(f"event type {type!r} is reserved for the server")
        self._send({"event": {"type": type, "data": data or {}}})

    def metric(self, name: str, value: float) -> None:
        self.event("metric", {"name": name, "value": value})


def main() -> None:
    # imports resolve from the working directory and PYTHONPATH (the bundle), never from
    # this file's directory, whose modules would shadow the step's
    sys.path[0] = os.getcwd()
    channel = os.fdopen(int(os.environ.pop("RUNYARD_HOST_FD")), "w", buffering=1)

    def send(message: dict[str, Any]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        channel.write(json.dumps(message, default=str) + "\n")

    job = json.loads(sys.stdin.read())
    reference = job["function"]
    module_name, _, attribute = reference.partition(":")
    try:
        function = getattr(import_module(module_name), attribute)
    except Exception as exc:  # ImportError, AttributeError, or the module's own failure
        traceback.print_exc()
        send({"error": {"code": "function_not_found", "message": f"{reference}: {exc}"}})
        return
    ctx = Context(job, send)
    try:
        if inspect.iscoroutinefunction(function):
            result = asyncio.run(function(ctx, ctx.input))
        else:
            result = function(ctx, ctx.input)
    except Exception as exc:
        traceback.print_exc()
        send({"error": {"code": "step_error", "message": f"{type(exc).__name__}: {exc}"}})
        return
    try:
        encoded = json.dumps({"result": result})
    except (TypeError, ValueError) as exc:
        send({"error": {"code": "step_output_invalid", "message": f"not JSON: {exc}"}})
        return
    sys.stdout.flush()
    sys.stderr.flush()
    channel.write(encoded + "\n")


if __name__ == "__main__":
    main()
