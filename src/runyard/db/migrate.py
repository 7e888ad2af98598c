"""Apply the Alembic tree (``runyard db upgrade``, and on every server start)."""

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from runyard.db.engine import Database

MIGRATIONS = Path(__file__).parent / "migrations"
#: any constant: replicas starting together take turns migrating PostgreSQL
_PG_MIGRATION_LOCK = 0x52_59_44_42


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade(db: Database) -> None:
    """Bring the schema to the newest revision (idempotent; safe with concurrent starters)."""
    if db.schema and not db.is_sqlite:
        async with db.write() as tx:  # IF NOT EXISTS alone races with another starter
            await tx.conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
            await tx.conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
    async with db.write() as tx:
        if not db.is_sqlite:
            await tx.conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
        await tx.conn.run_sync(_upgrade)
