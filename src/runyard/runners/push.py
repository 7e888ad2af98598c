"""Push runners (``executor.type: http``, DESIGN §7, §15): the server delivers each queued run
as a job to a remote system, which then reports through the runner API with the job's token.

The pusher claims the run (so no one else can) and keeps its lease alive while it delivers.
Delivery retries 5 times with exponential backoff from ``RUNYARD_PUSH_RETRY_BASE_SECONDS``
(1 s: about 31 s in all); a 4xx other than 408/429 fails at once. A job that cannot be
delivered fails the run with ``trigger_failed`` — it is never left waiting. After delivery,
the remote keeps the lease alive with heartbeats; one that never does is handled by the
lease rules like any runner.
"""

import asyncio
import contextlib
import logging
from typing import Any

import httpx

from runyard.broker import Broker, wait_for_executor
from runyard.context import Caller
from runyard.pipelines.service import PipelineService
from runyard.problems import DomainError, PipelineNotFound
from runyard.runners.tokens import RunnerTokens
from runyard.runs.schemas import RunStatusReport
from runyard.runs.service import RunService, claims_channel

log = logging.getLogger(__name__)
RUNNER_ID = "rnr_push"
RETRIES = 5
RECHECK_SECONDS = 5.0


class Undeliverable(Exception):
    pass


class Pusher:
    def __init__(
        self,
        runs: RunService,
        pipelines: PipelineService,
        tokens: RunnerTokens,
        broker: Broker,
        public_url: str,
        retry_base_seconds: float,
    ) -> None:
        self.runs = runs
        self.pipelines = pipelines
        self.tokens = tokens
        self.broker = broker
        self.public_url = public_url
        self.retry_base_seconds = retry_base_seconds
        self.deliveries: set[asyncio.Task[None]] = set()

    async def run_forever(self) -> None:
        wake = await self.broker.subscribe(claims_channel(None), 64)
        async with httpx.AsyncClient() as client:
            try:
                while True:
                    claimed = await self._claim()
                    if claimed is None:
                        await wait_for_executor(wake, b"http", RECHECK_SECONDS)
                        continue
                    task = asyncio.create_task(self._deliver(client, *claimed))
                    self.deliveries.add(task)
                    task.add_done_callback(self.deliveries.discard)
            finally:
                await self.broker.unsubscribe(wake)
                for task in list(self.deliveries):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _claim(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        try:
            return await self.runs.claim(None, runner_id=RUNNER_ID, executors=["http"])
        except Exception:
            log.exception("pusher: claim failed")
            return None

    async def _deliver(
        self, client: httpx.AsyncClient, run: dict[str, Any], lease: dict[str, Any]
    ) -> None:
        caller = Caller(workspace_id=run["workspace_id"], actor="runyard:push")
        beats = asyncio.create_task(self._keep_alive(caller, run["id"], lease))
        try:
            try:
                spec = await self.pipelines.version_spec(
                    run["pipeline_id"], run["pipeline_version"]
                )
            except PipelineNotFound as exc:
                raise Undeliverable(f"the pipeline is gone: {exc}") from exc
            executor = spec.get("executor") or {}
            token, _ = self.tokens.issue(
                run_id=run["id"],
                workspace_id=run["workspace_id"],
                attempt=lease["attempt"],
                lease_id=lease["id"],
            )
            job = {
                "run": run,
                "callback_url": f"{self.public_url}/v1/runner/runs/{run['id']}",
                "runner_token": token,
                "input": run["input"],
                "lease": {
                    "id": lease["id"],
                    "attempt": lease["attempt"],
                    "seconds": lease["duration_seconds"],
                },
            }
            await deliver(client, executor, job, retry_base_seconds=self.retry_base_seconds)
        except Undeliverable as exc:
            beats.cancel()
            with contextlib.suppress(DomainError):  # the run may have been cancelled meanwhile
                await self.runs.report(
                    caller,
                    run["id"],
                    RunStatusReport(
                        status="failed", error={"code": "trigger_failed", "message": str(exc)}
                    ),
                    lease_id=lease["id"],
                )
        except Exception:  # a delivery task must not die silently: the lease rules take over
            log.exception("pusher: delivering run %s failed unexpectedly", run["id"])
        finally:
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError, DomainError):
                await beats

    async def _keep_alive(self, caller: Caller, run_id: str, lease: dict[str, Any]) -> None:
        """Heartbeat while delivering, until the remote takes over."""
        while True:
            await asyncio.sleep(max(0.2, lease["duration_seconds"] / 3))
            await self.runs.heartbeat(caller, run_id, lease["id"])


async def deliver(
    client: httpx.AsyncClient,
    target: dict[str, Any],
    job: dict[str, Any],
    *,
    retry_base_seconds: float,
) -> None:
    """POST ``job`` to ``target["url"]`` (with its ``headers`` and ``timeout_seconds``),
    retrying 5 times with exponential backoff; a 4xx other than 408/429 stops at once."""
    url = target.get("url")
    if not url:
        raise Undeliverable("no url to deliver the job to")
    headers = {str(k): str(v) for k, v in (target.get("headers") or {}).items()}
    timeout = float(target.get("timeout_seconds") or 10)
    problem = ""
    for attempt in range(RETRIES + 1):
        if attempt:
            await asyncio.sleep(retry_base_seconds * 2 ** (attempt - 1))
        try:
            response = await client.post(url, json=job, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
            continue
        if response.is_success:
            return
        problem = f"HTTP {response.status_code} from {url}"
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            break  # the target refused the job itself; retrying will not change that
    raise Undeliverable(f"the job could not be delivered to {url}: {problem}")
