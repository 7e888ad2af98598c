"""The embedded worker's loop: claim ``steps`` runs from every workspace and execute them."""

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from runyard.agents.service import TURN_PIPELINE
from runyard.agents.turn import TurnExecution, TurnTools
from runyard.broker import Broker, wait_for_executor
from runyard.pipelines.service import PipelineService
from runyard.runs.service import RunService, claims_channel
from runyard.worker.execution import RunExecution, WorkerTools

log = logging.getLogger(__name__)
RUNNER_ID = "rnr_embedded"
#: a claim also happens this often without a wake-up: a safety net, not the mechanism
RECHECK_SECONDS = 5.0


class EmbeddedWorker:
    def __init__(
        self,
        runs: RunService,
        pipelines: PipelineService,
        tools: WorkerTools,
        broker: Broker,
        work_root: Path,
        concurrency: int,
        turns: TurnTools | None = None,
    ) -> None:
        self.runs = runs
        self.pipelines = pipelines
        self.tools = tools
        self.broker = broker
        self.work_root = work_root
        self.slots = asyncio.Semaphore(concurrency)
        self.executions: set[asyncio.Task[None]] = set()
        self.turns = turns
        self.executors = ["steps", "agent"] if turns is not None else ["steps"]

    async def run_forever(self) -> None:
        wake = await self.broker.subscribe(claims_channel(None), 64)
        try:
            while True:
                await self.slots.acquire()
                try:
                    claimed = await self.runs.claim(
                        None, runner_id=RUNNER_ID, executors=self.executors
                    )
                except Exception:
                    log.exception("embedded worker: claim failed")
                    claimed = None
                if claimed is None:
                    self.slots.release()
                    await wait_for_executor(
                        wake, tuple(e.encode() for e in self.executors), RECHECK_SECONDS
                    )
                    continue
                task = asyncio.create_task(self._execute(*claimed))
                self.executions.add(task)
                task.add_done_callback(self._finished)
        finally:
            await self.broker.unsubscribe(wake)
            for task in list(self.executions):
                task.cancel()
            for task in list(self.executions):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.executions.discard(task)
        self.slots.release()

    async def _execute(self, run: dict[str, Any], lease: dict[str, Any]) -> None:
        try:
            if run["pipeline"] == TURN_PIPELINE and self.turns is not None:
                await TurnExecution(self.turns, run, lease).execute()
                return
            work_dir = self.work_root / run["id"]
            work_dir.mkdir(parents=True, exist_ok=True)
            execution = RunExecution(self.runs, self.pipelines, self.tools, run, lease, work_dir)
            await execution.execute()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("embedded worker: run %s failed unexpectedly", run["id"])
