"""``Runner``: execute runs of ``worker`` pipelines with your own Python code.

    runner = Runner()                               # RUNYARD_URL, RUNYARD_API_KEY

    @runner.pipeline("deploy")
    async def deploy(ctx: RunContext) -> dict:
        plan = await ctx.step("plan", make_plan, ctx.input["target"])
        await ctx.approval("Ship it?")              # only when the run requires approval
        ctx.log("applying")
        return await ctx.step("apply", apply, plan)

    runner.run()                                    # or: runyard worker --import my_module

A runner claims runs (long-poll), heartbeats every third of the lease in the background,
and reports the handler's return value as the run's output (an exception fails the run,
``RunFailed`` with its own code). A cancel requested by the server cancels the handler at its
next ``await`` and the run ends ``cancelled``; a lease lost to the server (it expired, or
the run was force-cancelled) stops the handler without reporting anything, because the run
is no longer this runner's.
"""

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import socket
from dataclasses import dataclass
from typing import Any

from runyard import __version__
from runyard.client.async_client import AsyncClient
from runyard.client.context import ApprovalPending, Handler, RunContext, RunFailed
from runyard.client.errors import (
    APIError,
    Forbidden,
    InvalidTransition,
    NotFound,
    RunyardError,
    StaleLease,
    Unauthorized,
)

log = logging.getLogger("runyard.runner")
LOST = (StaleLease, NotFound, Forbidden, Unauthorized)
TOKEN_REFRESH_SECONDS = 600.0
MAX_CLAIM_BACKOFF = 30.0


@dataclass(frozen=True)
class Registered:
    handler: Handler
    gate: str  # "before": a run requiring approval waits before the handler; "handler": it gates


class Runner:
    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        workspace: str | None = None,
        name: str | None = None,
        labels: list[str] | None = None,
        concurrency: int = 1,
        wait_seconds: float = 30.0,
    ) -> None:
        self.url, self.api_key, self.workspace = url, api_key, workspace
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.labels = list(labels or [])
        self.concurrency = concurrency
        self.wait_seconds = wait_seconds
        self.handlers: dict[str, Registered] = {}

    def pipeline(self, name: str, *, gate: str = "before") -> Any:
        """Register an async handler for runs of the ``worker`` pipeline ``name``.

        ``gate="before"``: a run created with ``require_approval`` waits at a gate before the
        handler starts; ``gate="handler"``: the handler places its own ``ctx.approval()``.
        """
        if gate not in ("before", "handler"):
            raise ValueError('gate is "before" or "handler"')

        def register(fn: Handler) -> Handler:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(f"the handler for {name!r} must be an `async def` function")
            self.handlers[name] = Registered(fn, gate)
            return fn

        return register

    def run(self, *, max_runs: int | None = None, grace_seconds: float = 30.0) -> int:
        """Serve until SIGINT/SIGTERM (or ``max_runs`` runs); returns the runs handled."""
        return asyncio.run(self._run_with_signals(max_runs, grace_seconds))

    async def _run_with_signals(self, max_runs: int | None, grace_seconds: float) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await self.serve(max_runs=max_runs, stop=stop, grace_seconds=grace_seconds)

    async def serve(
        self,
        *,
        max_runs: int | None = None,
        stop: asyncio.Event | None = None,
        grace_seconds: float = 30.0,
    ) -> int:
        """Claim and execute runs until ``stop`` is set or ``max_runs`` runs were handled.

        On stop, no new run is claimed; runs in progress get ``grace_seconds`` to finish,
        then their handlers are cancelled and the runs handed back (``release``): queued
        again at once, the attempt not counted.
        """
        if not self.handlers:
            raise RuntimeError("no pipelines registered: use @runner.pipeline(name)")
        stop = stop or asyncio.Event()
        budget = _Budget(max_runs)
        async with AsyncClient(self.url, api_key=self.api_key, workspace=self.workspace) as client:
            slots = [
                asyncio.create_task(self._slot(client, stop, budget))
                for _ in range(self.concurrency)
            ]
            stopping: asyncio.Future[Any] = asyncio.create_task(stop.wait())
            everything: asyncio.Future[Any] = asyncio.gather(*slots)
            try:
                await asyncio.wait({stopping, everything}, return_when=asyncio.FIRST_COMPLETED)
                stop.set()
                done, _ = await asyncio.wait({everything}, timeout=grace_seconds)
                if not done:
                    log.warning("runs in progress after %s s: handing them back", grace_seconds)
            finally:  # also when serve() itself is cancelled: no slot outlives the client
                stop.set()
                stopping.cancel()
                everything.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await everything
        return budget.handled

    async def _slot(self, client: AsyncClient, stop: asyncio.Event, budget: "_Budget") -> None:
        backoff = 0.5
        while not stop.is_set() and budget.take():
            claim = asyncio.create_task(self._claim(client))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({claim, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not claim.done():
                claim.cancel()
                with contextlib.suppress(asyncio.CancelledError, RunyardError):
                    await claim
                budget.give_back()
                return
            try:
                claimed = claim.result()
            except RunyardError as exc:
                budget.give_back()
                log.warning("claim failed (%s); retrying in %.1f s", exc, backoff)
                await _sleep_unless(stop, backoff)
                backoff = min(backoff * 2, MAX_CLAIM_BACKOFF)
                continue
            backoff = 0.5
            if claimed is None:
                budget.give_back()
                continue
            try:
                await _Attempt(client, claimed, self.handlers).execute()
            except Exception:  # one run's trouble never stops the runner
                log.exception("run %s: the runner failed around it", claimed["run"]["id"])
            budget.handled += 1

    async def _claim(self, client: AsyncClient) -> dict[str, Any] | None:
        body = {
            "runner": {"name": self.name, "labels": self.labels, "version": __version__},
            "pipelines": sorted(self.handlers),
            "wait_seconds": self.wait_seconds,
        }
        # not retried here: a claim whose answer was lost may have leased a run, and a second
        # claim would lease another; the slot backs off and claims again
        claimed: dict[str, Any] | None = await client.request(
            "POST",
            "/v1/runner/claim",
            json=body,
            request_timeout=self.wait_seconds + 15,
            max_retries=0,
        )
        return claimed


class _Budget:
    """How many more runs may be claimed (``max_runs``), counting claims in flight."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.taken = 0
        self.handled = 0

    def take(self) -> bool:
        if self.limit is not None and self.taken >= self.limit:
            return False
        self.taken += 1
        return True

    def give_back(self) -> None:
        self.taken -= 1


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class _Attempt:
    """One claimed run: the handler, its heartbeats, and the final report."""

    def __init__(
        self, client: AsyncClient, claimed: dict[str, Any], handlers: dict[str, Registered]
    ) -> None:
        self.ctx = RunContext(client, claimed)
        self.registered = handlers[claimed["run"]["pipeline"]]
        duration = float(claimed["lease"].get("duration_seconds") or 30)
        self.interval = max(0.2, duration / 3)

    async def execute(self) -> None:
        ctx = self.ctx
        log.info("run %s (%s): attempt %d", ctx.run_id, ctx.run["pipeline"], ctx.attempt)
        work = asyncio.create_task(self._handle())
        beats = asyncio.create_task(self._heartbeats(work))
        try:
            outcome = await self._outcome(work)
        finally:
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats
            await ctx.close()
        log.info("run %s: %s", ctx.run_id, outcome)

    async def _handle(self) -> Any:
        if self.registered.gate == "before" and self.ctx.require_approval:
            await self.ctx.approval(f"Approve {self.ctx.run['pipeline']} to start")
        return await self.registered.handler(self.ctx)

    async def _outcome(self, work: asyncio.Task[Any]) -> str:
        ctx = self.ctx
        try:
            output = await work
        except ApprovalPending:
            return "waiting for approval"
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                await self._release()  # the runner is stopping: hand the run back
                raise
            if ctx.cancel_requested:
                return await self._finish("cancelled", {"status": "cancelled"})
            if ctx.lease_lost:
                return "lease lost: left to the next attempt"
            error = {"code": "handler_cancelled", "message": "the handler was cancelled"}
            return await self._finish("failed", {"status": "failed", "error": error})
        except LOST:
            return "lease lost: left to the next attempt"
        except RunFailed as exc:
            error = {"code": exc.code, "message": exc.message}
            return await self._finish("failed", {"status": "failed", "error": error})
        except Exception as exc:
            log.exception("run %s: the handler failed", ctx.run_id)
            error = {"code": "handler_error", "message": f"{type(exc).__name__}: {exc}"}
            return await self._finish("failed", {"status": "failed", "error": error})
        return await self._finish("completed", {"status": "completed", "output": output})

    async def _release(self) -> None:
        """Queue the run again at once; if that fails, its lease expires and the server does
        it (the attempt then counts)."""
        try:
            await self.ctx.flush()
            await self.ctx.call("/release", max_retries=1, request_timeout=5)
            log.info("run %s: handed back", self.ctx.run_id)
        except RunyardError as exc:
            log.warning("run %s: not handed back (%s); its lease will expire", self.ctx.run_id, exc)

    async def _finish(self, outcome: str, body: dict[str, Any]) -> str:
        """The final report; any failure is logged and the run left to its lease."""
        try:
            await self.ctx.flush()
            try:
                await self.ctx.call("/status", body)
            except InvalidTransition as exc:
                if exc.current_status != "cancelling":
                    raise
                # a cancel was requested while the handler finished: acknowledge it
                await self.ctx.call("/status", {"status": "cancelled"})
                return "cancelled"
            except TypeError as exc:  # the output is not JSON
                error = {"code": "output_not_json", "message": str(exc)}
                await self.ctx.call("/status", {"status": "failed", "error": error})
                return "failed: the output is not JSON"
        except LOST:
            return "lease lost before the report"
        except RunyardError as exc:  # a forced cancel ended it, the server is away, ...
            log.warning("run %s: not reported (%s)", self.ctx.run_id, exc)
            return f"not reported: {exc}"
        return outcome

    async def _heartbeats(self, work: asyncio.Task[Any]) -> None:
        ctx = self.ctx
        while not work.done():
            await asyncio.sleep(self.interval)
            try:
                beat = await ctx.call(
                    "/heartbeat", max_retries=1, request_timeout=max(1.0, self.interval)
                )
                if ctx.token_expires_in() < TOKEN_REFRESH_SECONDS:
                    ctx.token = (await ctx.call("/token"))["token"]
            except LOST:
                ctx.lease_lost = True
                work.cancel()
                return
            except APIError as exc:
                log.warning("run %s: heartbeat refused: %s", ctx.run_id, exc)
                continue
            except RunyardError as exc:  # unreachable server: keep trying until it expires
                log.warning("run %s: heartbeat failed: %s", ctx.run_id, exc)
                continue
            if beat["cancel_requested"] and not ctx.cancel_requested:
                ctx.cancel_requested = True
                work.cancel()
                return
