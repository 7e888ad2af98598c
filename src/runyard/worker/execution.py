"""Executing one claimed ``steps`` run: steps in order, memoized, with retries, timeouts,
heartbeats and cancellation.

Completed steps recorded on the run are not executed again when a run resumes on a new
attempt (after a lost lease); their outputs feed the templates of later steps as before.
"""

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from runyard.artifacts.service import ArtifactService
from runyard.builds.resources import BuildFailed, Environment
from runyard.builds.service import BuildService
from runyard.builds.specs import BUILD_STEP
from runyard.pipelines.service import PipelineService
from runyard.problems import DomainError, StaleLease
from runyard.runners.push import Undeliverable, deliver
from runyard.runners.tokens import RunnerTokens
from runyard.runs.service import RunService
from runyard.worker.buffer import EventBuffer
from runyard.worker.extract_step import Jobs, run_extract
from runyard.worker.leased import SOURCE, LeasedExecution
from runyard.worker.llm_step import ModelCalls, run_llm
from runyard.worker.steps import (
    StepContext,
    StepFailed,
    StepPlace,
    run_command,
    run_python,
    server_place,
)
from runyard.worker.templates import TemplateFailure, condition, render

log = logging.getLogger(__name__)
HTTP_STEP_POLL_SECONDS = 0.2
#: the server's own virtualenv and paths, which a pipeline environment's steps must not see
_SERVER_ONLY = ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")


@dataclass(frozen=True)
class WorkerTools:
    """What steps use beyond the run: artifact storage, and for ``http`` steps a client, the
    token issuer and the address remote systems call back."""

    artifacts: ArtifactService
    tokens: RunnerTokens
    http: httpx.AsyncClient
    public_url: str
    retry_base_seconds: float = 1.0
    #: how ``llm`` and ``extract`` steps reach models (None: they fail with
    #: ``unsupported_step``)
    model_calls: ModelCalls | None = None
    #: what ``extract`` steps read: prompts, configs, documents (None: unsupported)
    extraction: Jobs | None = None
    #: makes the environments of pipelines that declare one (None: such runs fail)
    builds: BuildService | None = None


class RunExecution(LeasedExecution):
    def __init__(
        self,
        runs: RunService,
        pipelines: PipelineService,
        tools: WorkerTools,
        run: dict[str, Any],
        lease: dict[str, Any],
        work_dir: Path,
    ) -> None:
        super().__init__(runs, run, lease)
        self.pipelines = pipelines
        self.tools = tools
        self.collected: dict[str, tuple[int, int]] = {}
        self.work_dir = work_dir
        self.usage: dict[str, Any] = dict(run["usage"] or {})
        self.environment: Environment | None = None
        self.environment_vars: dict[str, str] = {}

    async def execute(self) -> None:
        self.buffer = EventBuffer(self._write_events)
        work = asyncio.current_task()
        assert work is not None
        beats = asyncio.create_task(self._heartbeat(work))
        try:
            timeout = self.run["timeout_seconds"]
            async with asyncio.timeout(timeout):
                outcome = await self._steps()
            await self.buffer.close()
            if outcome is not None:  # None: the run waits at a gate, out of our hands
                await self._report(**outcome)
        except StaleLease:
            log.info("run %s: the lease was lost; another attempt takes over", self.run["id"])
        except asyncio.CancelledError:
            if not self.cancel_requested:
                await self._release()  # the worker is shutting down: hand the run back
                raise
            await self.buffer.close()
            await self._report(status="cancelled")
        except TimeoutError:
            await self.buffer.close()
            await self._report(
                status="failed",
                error={
                    "code": "timeout",
                    "step": self.run.get("current_step"),
                    "message": f"the run exceeded {self.run['timeout_seconds']} s",
                },
            )
        finally:
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError, StaleLease, DomainError):
                await beats
            with contextlib.suppress(StaleLease, DomainError):
                await self.buffer.close()

    async def _steps(self) -> dict[str, Any] | None:
        spec = await self.pipelines.version_spec(
            self.run["pipeline_id"], self.run["pipeline_version"]
        )
        rolling_back = "rollback_of" in self.run["input"]
        steps = list(spec.get("rollback_steps" if rolling_back else "steps") or [])
        if self.run["require_approval"] and not any(s["uses"] == "approval" for s in steps):
            # a run that requires approval in a pipeline without a gate waits before step one
            steps.insert(0, {"name": "approval", "uses": "approval", "with": {"always": True}})
        done = {s["name"]: s for s in self.run["steps"] if s["status"] in ("completed", "skipped")}
        if spec.get("environment") is not None:
            failure = await self._prepare_environment(spec["environment"], BUILD_STEP in done)
            if failure is not None:
                return failure
            assert self.tools.builds is not None and self.environment is not None
            with self.tools.builds.using(self.environment):
                return await self._run_steps(spec, steps, done)
        return await self._run_steps(spec, steps, done)

    async def _prepare_environment(
        self, environment: dict[str, Any], prepared_before: bool
    ) -> dict[str, Any] | None:
        """The pipeline's environment, built first when missing (the step ``build``); the
        run's failure when there can be none."""
        if self.tools.builds is None:
            error = {"code": "build_failed", "message": "this worker cannot build environments"}
            return {"status": "failed", "error": {**error, "step": BUILD_STEP}}
        if not prepared_before:
            await self._record(BUILD_STEP, "running")
        try:
            prepared = await self.tools.builds.for_run(self.run, environment, self.buffer.put)
        except BuildFailed as exc:
            cause = exc.error
            message = f"{cause.get('code')}: {cause.get('message')}"
            await self._record(
                BUILD_STEP,
                "failed",
                error={"code": "build_failed", "message": message, "build_id": exc.build_id},
            )
            return {
                "status": "failed",
                "error": {"code": "build_failed", "message": message, "step": BUILD_STEP},
            }
        if not prepared_before:
            await self._record(BUILD_STEP, "completed", output=prepared.summary())
        self.environment = prepared.environment
        self.environment_vars = dict(environment.get("env") or {})
        return None

    def _place(self, name: str) -> StepPlace:
        """Without an environment, the run's working directory in the server's environment;
        with one, a working directory of the step's own and the environment's interpreter."""
        env = self.environment
        if env is None:
            return server_place(self.work_dir)
        cwd = self.work_dir / "steps" / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        cwd.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if k not in _SERVER_ONLY}
        variables = {
            **base,
            "PATH": f"{env.interpreter.parent}{os.pathsep}{base.get('PATH', '')}",
            "VIRTUAL_ENV": str(env.interpreter.parent.parent),
            "PYTHONPATH": str(env.bundle_dir),
            "RUNYARD_BUNDLE_DIR": str(env.bundle_dir),
            "RUNYARD_ENVIRONMENT_KEY": env.key,
            **self.environment_vars,
        }
        return StepPlace(cwd=cwd, env=variables, python=str(env.interpreter))

    async def _run_steps(
        self, spec: dict[str, Any], steps: list[dict[str, Any]], done: dict[str, Any]
    ) -> dict[str, Any] | None:
        outputs: dict[str, Any] = {
            name: {"output": s["output"], "status": s["status"]}
            for name, s in done.items()
            if name != BUILD_STEP or spec.get("environment") is None
        }
        for step in steps:
            name = step["name"]
            if name in done:
                continue  # memoized: completed on an earlier attempt
            context = {
                "input": self.run["input"],
                "steps": outputs,
                "run": {"id": self.run["id"], "attempt": self.run["attempt"]},
            }
            try:
                if step.get("if") and not condition(step["if"], context):
                    await self._record(name, "skipped")
                    outputs[name] = {"output": None, "status": "skipped"}
                    continue
                if step["uses"] == "approval":
                    gate = await self._gate(step, context)
                    if gate is None:
                        return None
                    outputs[name] = gate
                    continue
                output = await self._step_with_retries(step, context)
            except (StepFailed, TemplateFailure) as exc:
                code = exc.code if isinstance(exc, StepFailed) else "template_error"
                message = exc.message if isinstance(exc, StepFailed) else str(exc)
                return {
                    "status": "failed",
                    "error": {"code": code, "message": message, "step": name},
                }
            outputs[name] = {"output": output, "status": "completed"}
        if spec.get("output_step") in outputs:  # a built-in pipeline's output is one step's
            return {"status": "completed", "output": outputs[spec["output_step"]]["output"]}
        return {
            "status": "completed",
            "output": {name: value["output"] for name, value in outputs.items()},
        }

    async def _gate(self, step: dict[str, Any], context: dict[str, Any]) -> dict[str, Any] | None:
        """An ``approval`` step: passed once approved; otherwise the run blocks (None).
        It applies only when the run requires approval, unless ``with.always`` is set."""
        name = step["name"]
        options = render(step.get("with") or {}, context)
        if not (self.run["require_approval"] or options.get("always")):
            await self._record(name, "skipped")
            return {"output": None, "status": "skipped"}
        approval = self.run["approval"] or {}
        if approval.get("step") == name and approval.get("state") == "approved":
            output = {"approved_by": approval["decided_by"], "comment": approval["comment"]}
            await self._record(name, "completed", output=output)
            return {"output": output, "status": "completed"}
        await self._record(name, "running")
        await self.runs.request_approval(
            self.caller,
            self.run["id"],
            message=str(options.get("message") or f"Approve {self.run['pipeline']} to go on"),
            expires_in_seconds=options.get("expires_in_seconds"),
            on_expire=options.get("on_expire", "reject"),
            allow_self_approval=options.get("allow_self_approval", True),
            step=name,
            lease_id=self.lease_id,
        )
        return None

    async def _step_with_retries(self, step: dict[str, Any], context: dict[str, Any]) -> Any:
        name = step["name"]
        retries = int(step.get("retries") or 0)
        for attempt in range(retries + 1):
            await self._record(name, "running")
            try:
                options = render(step.get("with") or {}, context)
                async with asyncio.timeout(step.get("timeout_seconds")):
                    output = await self._run_step(step["uses"], name, options, attempt + 1)
            except TimeoutError:
                failure = StepFailed("step_timeout", f"exceeded {step['timeout_seconds']} s")
            except (StepFailed, TemplateFailure) as exc:
                failure = (
                    exc if isinstance(exc, StepFailed) else StepFailed("template_error", str(exc))
                )
            else:
                await self._collect_outputs()
                if step["uses"] != "http":  # an http step's remote recorded its own outcome
                    await self._record(name, "completed", output=output)
                return output
            if not failure.recorded:
                await self._record(name, "failed", error=failure.error())
            if attempt == retries:
                raise failure
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run_step(self, uses: str, name: str, options: dict[str, Any], attempt: int) -> Any:
        output_dir = self.work_dir / "outputs"
        output_dir.mkdir(parents=True, exist_ok=True)
        ctx = StepContext(
            run_id=self.run["id"],
            step=name,
            attempt=attempt,
            input=self.run["input"],
            require_approval=self.run["require_approval"],
            output_dir=output_dir,
            buffer=self.buffer,
        )
        if uses == "command":
            return await run_command(options, ctx, self._place(name))
        if uses == "python":
            return await run_python(options, ctx, self._place(name))
        if uses == "http":
            return await self._http_step(name, options, attempt)
        if uses == "llm" and self.tools.model_calls is not None:
            return await run_llm(
                options, ctx, self.tools.model_calls, self.run["workspace_id"], self._add_usage
            )
        if uses == "extract" and self.tools.model_calls and self.tools.extraction:
            output, metrics = await run_extract(
                options,
                ctx,
                self.tools.model_calls,
                self.tools.extraction,
                self.run["workspace_id"],
                self._add_usage,
            )
            await self._report(metrics=metrics)
            return output
        raise StepFailed("unsupported_step", f"the embedded worker cannot run `{uses}` steps yet")

    async def _http_step(self, name: str, options: dict[str, Any], attempt: int) -> Any:
        """Deliver a job for this step to ``with.url``, then wait for the remote system to
        report the step (``POST .../steps/{name}``) with the token it was given."""
        token, _ = self.tools.tokens.issue(
            run_id=self.run["id"],
            workspace_id=self.run["workspace_id"],
            attempt=self.run["attempt"],
            lease_id=self.lease_id,
        )
        job = {
            "run_id": self.run["id"],
            "step": name,
            "attempt": attempt,
            "callback_url": f"{self.tools.public_url}/v1/runner/runs/{self.run['id']}",
            "runner_token": token,
            "input": self.run["input"],
            "with": options,
        }
        try:
            await deliver(
                self.tools.http, options, job, retry_base_seconds=self.tools.retry_base_seconds
            )
        except Undeliverable as exc:
            raise StepFailed("trigger_failed", str(exc)) from exc
        while True:  # bounded by the step's (or the run's) timeout around this call
            await asyncio.sleep(HTTP_STEP_POLL_SECONDS)
            run = await self.runs.get(self.caller, self.run["id"])
            step = next((s for s in run["steps"] if s["name"] == name), None)
            if step is None or step["status"] == "running":
                continue
            if step["status"] == "completed":
                return step["output"]
            error = step.get("error") or {}
            failure = StepFailed(
                str(error.get("code") or "step_failed"),
                str(error.get("message") or "the remote step failed"),
            )
            failure.recorded = True
            raise failure

    async def _add_usage(self, usage: dict[str, Any]) -> None:
        """Add a model call's tokens and cost to the run's ``usage`` (kept across attempts)."""
        for key in ("input_tokens", "output_tokens"):
            self.usage[key] = int(self.usage.get(key) or 0) + int(usage[key])
        if usage["cost_usd"] is not None:
            self.usage["cost_usd"] = round(
                float(self.usage.get("cost_usd") or 0.0) + usage["cost_usd"], 10
            )
        await self._report(usage=self.usage)

    async def _collect_outputs(self) -> None:
        """Files the step wrote to ``$RUNYARD_OUTPUT_DIR`` become artifacts (by their path),
        new or changed ones only."""
        root = self.work_dir / "outputs"
        if not root.is_dir():
            return
        for file in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            relative = file.relative_to(root).as_posix()
            stat = file.stat()
            if self.collected.get(relative) == (stat.st_size, stat.st_mtime_ns):
                continue
            await self.tools.artifacts.upload(
                self.caller,
                self.run["id"],
                _read_file(file),
                filename=file.name,
                artifact_type="output",
                path=relative,
                lease_id=self.lease_id,
            )
            self.collected[relative] = (stat.st_size, stat.st_mtime_ns)

    async def _record(self, name: str, status: str, **details: Any) -> None:
        await self.buffer.flush()  # a step's lines land before its end event
        await self.runs.record_step(
            self.caller,
            self.run["id"],
            name,
            status,
            lease_id=self.lease_id,
            source=SOURCE,
            **details,
        )


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, 256 * 1024):
            yield chunk
