"""The one Alembic tree builds exactly the schema the code declares, on both databases."""

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI

from runyard.db.migrate import upgrade
from runyard.schema import metadata

pytestmark = pytest.mark.anyio


async def test_migrated_schema_matches_the_tables_and_upgrade_is_idempotent(app: FastAPI) -> None:
    db = app.state.services.db
    await upgrade(db)  # already applied on start: a second run changes nothing

    def diff(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with db.read() as conn:
        assert await conn.run_sync(diff) == []
