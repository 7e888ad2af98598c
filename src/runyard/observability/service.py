"""Operational views (DESIGN §12): fleet health and the workspace's status."""

import asyncio
from typing import Any

from runyard.blobs import BlobStore
from runyard.broker import Broker
from runyard.context import Caller
from runyard.db.engine import Database
from runyard.events.service import EventService
from runyard.runners.service import RunnerService
from runyard.runs.service import RunService

CHECK_TIMEOUT_SECONDS = 2.0


async def _probe(check: Any) -> str:
    try:
        await asyncio.wait_for(check, CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # any failure means the dependency is down; name it, do not raise
        return f"down: {type(exc).__name__}"
    return "ok"


class OperationsService:
    def __init__(
        self,
        db: Database,
        broker: Broker,
        blobs: BlobStore,
        runs: RunService,
        runners: RunnerService,
        events: EventService,
    ) -> None:
        self.db = db
        self.broker = broker
        self.blobs = blobs
        self.runs = runs
        self.runners = runners
        self.events = events
        self.worker_task: asyncio.Task[None] | None = None

    async def dependencies(self) -> dict[str, str]:
        """``ok`` or ``down: <why>`` for the database, the broker and the blob store."""
        database, broker, blobs = await asyncio.gather(
            _probe(self.db.ping()), _probe(self.broker.ping()), _probe(self.blobs.ping())
        )
        return {"database": database, "broker": broker, "blobs": blobs}

    def worker_state(self) -> str:
        if self.worker_task is None:
            return "disabled"
        return "down" if self.worker_task.done() else "ok"

    async def fleet_health(self, caller: Caller) -> dict[str, Any]:
        checks = await self.dependencies()
        components = {name: "ok" if value == "ok" else "down" for name, value in checks.items()}
        components["worker"] = self.worker_state()
        runners = [
            {key: runner[key] for key in ("id", "name", "status", "last_seen_at", "current_runs")}
            for runner in await self.runners.list_runners(caller)
        ]
        healthy = all(state in ("ok", "disabled") for state in components.values())
        return {
            "status": "ok" if healthy else "degraded",
            "components": components,
            "runners": runners,
        }

    async def status(self, caller: Caller) -> dict[str, Any]:
        counts = await self.runs.count_by_status(caller)
        checks = await self.dependencies()
        deploy = await self.events.latest_of_type(caller.workspace_id, "deploy.succeeded")
        operational = all(value == "ok" for value in checks.values()) and (
            self.worker_state() != "down"
        )
        return {
            "status": "operational" if operational else "degraded",
            "queued": counts.get("queued", 0),
            "running": counts.get("running", 0) + counts.get("cancelling", 0),
            "blocked": counts.get("blocked", 0),
            "last_deploy": (
                {"run_id": deploy["run_id"], "at": deploy["time"]} if deploy is not None else None
            ),
        }
