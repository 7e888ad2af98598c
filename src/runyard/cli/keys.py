"""``runyard keys``: bootstrap API keys straight in the database (DESIGN §4)."""

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from runyard.settings import Settings

keys_app = typer.Typer(no_args_is_help=True, help="API keys.")


async def _create(settings: Settings, workspace: str, role: str, name: str) -> str:
    from runyard.audit.service import AuditService
    from runyard.auth.service import ApiKeyService
    from runyard.context import Caller
    from runyard.db.engine import Database
    from runyard.db.migrate import upgrade
    from runyard.workspaces.service import WorkspaceService

    db = Database(settings.resolved_database_url(), schema=settings.database_schema)
    try:
        await upgrade(db)
        workspaces = WorkspaceService(db)
        await workspaces.ensure_default()
        if not await workspaces.exists(workspace):
            raise typer.BadParameter(
                f"workspace {workspace} does not exist", param_hint="--workspace"
            )
        caller = Caller(workspace_id=workspace, actor="runyard:cli")
        created = await ApiKeyService(db, AuditService(db)).create(caller, name=name, role=role)
        return str(created["secret"])
    finally:
        await db.dispose()


async def keys_exist(settings: Settings) -> bool:
    """Whether any API key exists (then the server is not in open mode)."""
    from runyard.audit.service import AuditService
    from runyard.auth.service import ApiKeyService
    from runyard.db.engine import Database
    from runyard.db.migrate import upgrade

    db = Database(settings.resolved_database_url(), schema=settings.database_schema)
    try:
        await upgrade(db)
        return not await ApiKeyService(db, AuditService(db)).open_mode()
    finally:
        await db.dispose()


@keys_app.command("create")
def create(
    role: Annotated[str, typer.Option(help="admin, member, viewer or runner.")] = "admin",
    workspace: Annotated[str, typer.Option(help="The key's workspace.")] = "ws_default",
    name: Annotated[str, typer.Option(help="A name to recognise it by.")] = "bootstrap",
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory (default ./.runyard).")
    ] = None,
) -> None:
    """Create an API key and print its secret (shown only this once). The first key ends open
    mode: from then on every request needs a key."""
    from runyard.cli.main import _settings

    settings = _settings(data_dir=data_dir)
    if role not in ("admin", "member", "viewer", "runner"):
        raise typer.BadParameter("admin, member, viewer or runner", param_hint="--role")
    typer.echo(asyncio.run(_create(settings, workspace, role, name)))
