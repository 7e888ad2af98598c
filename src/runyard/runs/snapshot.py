"""The run as webhook payloads show it (DESIGN §15: the run resource without its steps)."""

from typing import Any

from runyard.db.engine import Conn
from runyard.runs import repo
from runyard.runs.schemas import run_resource


async def run_snapshot(conn: Conn, workspace_id: str, run_id: str) -> dict[str, Any] | None:
    """The run as it stands in the transaction of ``conn`` (None when it does not exist)."""
    row = await repo.get(conn, workspace_id, run_id)
    if row is None:
        return None
    resource = run_resource(row)
    del resource["steps"]
    return resource
