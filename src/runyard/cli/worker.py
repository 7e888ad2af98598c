"""``runyard worker``: serve the handlers that modules register on a ``Runner``."""

import importlib
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from runyard.client.runner import Runner


def collect(modules: list[str]) -> list[Runner]:
    """Every ``Runner`` the ``modules`` define (the current directory is importable)."""
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    runners: list[Runner] = []
    for name in modules:
        module = importlib.import_module(name)
        found = [value for value in vars(module).values() if isinstance(value, Runner)]
        if not found:
            raise typer.BadParameter(f"{name} defines no Runner", param_hint="--import")
        runners.extend(found)
    return runners


def worker(
    modules: Annotated[
        list[str],
        typer.Option("--import", "-i", help="Module whose Runner handlers to serve (repeatable)."),
    ],
    url: Annotated[
        str | None, typer.Option(help="Server URL (default $RUNYARD_URL, else 127.0.0.1:8000).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Runner name (default host-pid).")] = None,
    label: Annotated[list[str] | None, typer.Option(help="Runner label (repeatable).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Runs executed at once.")] = 1,
    max_runs: Annotated[
        int | None, typer.Option(min=1, help="Exit after handling this many runs.")
    ] = None,
    grace_seconds: Annotated[
        float, typer.Option(help="On SIGTERM/SIGINT, time given to runs in progress.")
    ] = 30.0,
) -> None:
    """Claim and execute runs of `worker` pipelines with the handlers of --import modules.

    The API key comes from $RUNYARD_API_KEY (not needed in open mode)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    found = collect(modules)
    first = found[0]
    runner = Runner(
        url or first.url,
        api_key=first.api_key,
        workspace=first.workspace,
        name=name or first.name,
        labels=label or first.labels,
        concurrency=concurrency,
    )
    for each in found:
        runner.handlers.update(each.handlers)
    if not runner.handlers:
        raise typer.BadParameter("no @runner.pipeline handlers were registered")
    typer.echo(f"runner {runner.name}: serving {', '.join(sorted(runner.handlers))}", err=True)
    handled = runner.run(max_runs=max_runs, grace_seconds=grace_seconds)
    typer.echo(f"runner {runner.name}: handled {handled} run(s)", err=True)
