"""What every execution on the embedded worker does with its lease: heartbeats that notice a
cancel or a lost lease, the run's events written under the lease, reports, and handing the
run back on shutdown."""

import asyncio
import logging
from typing import Any

from runyard.context import Caller
from runyard.events.service import NewEvent
from runyard.problems import DomainError
from runyard.runs.schemas import RunStatusReport
from runyard.runs.service import RunService
from runyard.worker.buffer import EventBuffer

log = logging.getLogger(__name__)
SOURCE = "worker"


class LeasedExecution:
    buffer: EventBuffer

    def __init__(self, runs: RunService, run: dict[str, Any], lease: dict[str, Any]) -> None:
        self.runs = runs
        self.run = run
        self.lease_id: str = lease["id"]
        self.heartbeat_seconds = max(0.2, lease["duration_seconds"] / 3)
        self.caller = Caller(workspace_id=run["workspace_id"], actor="runyard:worker")
        self.cancel_requested = False

    async def _heartbeat(self, work: asyncio.Task[Any]) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                _, cancel = await self.runs.heartbeat(self.caller, self.run["id"], self.lease_id)
            except DomainError:  # the lease is gone (stale, run deleted): stop working on it
                work.cancel()
                return
            except Exception:  # e.g. the database blinked: try again at the next beat
                log.exception("run %s: heartbeat failed", self.run["id"])
                continue
            if cancel:
                self._stop(work)
                return

    def _stop(self, work: asyncio.Task[Any]) -> None:
        """The run's cancel was requested: stop the work (once)."""
        if not self.cancel_requested:
            self.cancel_requested = True
            work.cancel()

    async def _write_events(self, batch: list[NewEvent]) -> None:
        await self.runs.ingest(
            self.caller, self.run["id"], batch, lease_id=self.lease_id, source=SOURCE
        )

    async def _release(self) -> None:
        """Queue the run again now (its events so far kept); if that fails, the lease
        expires and the sweeper does it."""
        try:
            await self.buffer.close()
            await self.runs.release(self.caller, self.run["id"], self.lease_id)
        except DomainError:
            pass  # the lease is gone already (stale, run deleted): nothing to hand back
        except Exception:
            log.warning(
                "run %s: could not hand the run back; its lease will expire", self.run["id"]
            )

    async def _report(self, **body: Any) -> None:
        await self.runs.report(
            self.caller, self.run["id"], RunStatusReport(**body), lease_id=self.lease_id
        )
