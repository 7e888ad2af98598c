"""The ``runyard`` command."""

import asyncio
import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from runyard.cli.keys import keys_app, keys_exist
from runyard.cli.worker import worker
from runyard.settings import Settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Runyard: runs and their events."
)
db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")
app.add_typer(db_app, name="db")
app.command("worker")(worker)
app.add_typer(keys_app, name="keys")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _settings(**overrides: object) -> Settings:
    given = {k: v for k, v in overrides.items() if v is not None}
    return Settings.model_validate({**Settings().model_dump(), **given})


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to bind (default 8000; 0 = any free).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory (default ./.runyard).")
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not run the embedded worker.")
    ] = False,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow a non-loopback bind in open mode.")
    ] = False,
) -> None:
    """Run the server (migrations apply on start)."""
    import uvicorn

    from runyard.app import create_app

    settings = _settings(
        host=host,
        port=port,
        data_dir=data_dir,
        worker_enabled=False if no_worker else None,
        insecure=True if insecure else None,
    )
    if (
        not _is_loopback(settings.host)
        and not settings.insecure
        and not asyncio.run(keys_exist(settings))
    ):
        typer.echo(
            f"refusing to bind {settings.host}: open mode (no API keys) is only safe on loopback; "
            "create a key (`runyard keys create`) or pass --insecure",
            err=True,
        )
        raise typer.Exit(2)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


@db_app.command("upgrade")
def db_upgrade(
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory (default ./.runyard).")
    ] = None,
) -> None:
    """Apply database migrations up to the newest revision."""
    from runyard.db.engine import Database
    from runyard.db.migrate import upgrade

    settings = _settings(data_dir=data_dir)

    async def run() -> None:
        db = Database(settings.resolved_database_url(), schema=settings.database_schema)
        try:
            await upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(run())
    typer.echo("database is up to date")


def main() -> None:
    app()
