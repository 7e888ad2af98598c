"""Child processes whose output becomes lines: command steps, hosted python steps, builds.

A child gets its own process group, so that a cancel or a timeout kills what it started too.
"""

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

#: called with ``("stdout" | "stderr", text)`` for every line, without its line break
OnLine = Callable[[str, str], None]
#: longest line kept whole; a longer one is cut (a process printing megabytes without a
#: line break must not hold them all in memory)
MAX_LINE = 64 * 1024


async def run_process(
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    on_line: OnLine,
    stdin: bytes | None = None,
    pass_fds: Collection[int] = (),
) -> int:
    """Run ``argv`` to its end and return its exit code; ``OSError`` when it cannot start."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=str(cwd),
        env=dict(env),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        pass_fds=tuple(pass_fds),
        limit=MAX_LINE,
    )

    async def feed() -> None:
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.write(stdin or b"")
            await process.stdin.drain()
            process.stdin.close()

    try:
        await asyncio.gather(
            *([feed()] if stdin is not None else []),
            pump(process.stdout, "stdout", on_line),
            pump(process.stderr, "stderr", on_line),
        )
        return await process.wait()
    except BaseException:  # cancelled, timed out, or failed reading: the whole group goes
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise


async def pump(stream: asyncio.StreamReader | None, name: str, on_line: OnLine) -> None:
    assert stream is not None
    while True:
        try:
            line = await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # the end: a last line without a break
            if exc.partial:
                on_line(name, exc.partial.decode(errors="replace"))
            return
        except asyncio.LimitOverrunError as exc:  # a line longer than MAX_LINE: cut it
            line = await stream.readexactly(exc.consumed)
        on_line(name, line.decode(errors="replace").rstrip("\n"))
