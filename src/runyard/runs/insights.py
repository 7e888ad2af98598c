"""What a run's history says (DESIGN §5.3): its summary and its diagnostics."""

from collections.abc import Awaitable, Callable
from typing import Any

from runyard.builds.specs import BUILD_STEP
from runyard.clock import isoformat, ms_between
from runyard.context import Caller
from runyard.db.engine import Database
from runyard.events.service import EventService
from runyard.pipelines import repo as pipeline_repo
from runyard.problems import RunNotFound
from runyard.runs import repo
from runyard.runs.compare import compare_runs
from runyard.runs.schemas import run_resource

#: the stored record of a ready environment by key (its packages), or None
EnvironmentRecord = Callable[[str], Awaitable[dict[str, Any] | None]]


class RunInsights:
    def __init__(
        self, db: Database, events: EventService, environment: EnvironmentRecord | None = None
    ) -> None:
        self.db = db
        self.events = events
        self.environment = environment

    async def _steps(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        """Each step's status, attempt, duration and, for a process, its exit code."""
        async with self.db.read() as conn:
            spec = await pipeline_repo.version_spec(
                conn, run["pipeline_id"], run["pipeline_version"]
            )
        spec = spec or {}
        uses = {
            s["name"]: s["uses"]
            for s in [*spec.get("steps", []), *(spec.get("rollback_steps") or [])]
        }
        steps = []
        for step in run["steps"]:
            entry = {
                "name": step["name"],
                "status": step["status"],
                "attempt": step["attempt"],
                "duration_ms": ms_between(step["started_at"], step["completed_at"]),
            }
            if uses.get(step["name"]) == "command":
                output, error = step.get("output"), step.get("error")
                entry["exit_code"] = (
                    output.get("exit_code")
                    if isinstance(output, dict)
                    else (error or {}).get("exit_code")
                )
            steps.append(entry)
        return steps

    @staticmethod
    def _build(run: dict[str, Any]) -> dict[str, Any] | None:
        """What the run's ``build`` step recorded: its environment, and whether it was reused."""
        step = next((s for s in run["steps"] if s["name"] == BUILD_STEP), None)
        if step is None or not isinstance(step.get("output"), dict):
            return None
        output: dict[str, Any] = step["output"]
        return output if "environment_key" in output else None

    async def _run(self, caller: Caller, run_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            run = await repo.get(conn, caller.workspace_id, run_id)
        if run is None:
            raise RunNotFound(f"run {run_id} not found")
        return run

    async def compare(self, caller: Caller, run_id: str, other_id: str) -> dict[str, Any]:
        """DESIGN §5.4: ``run_id`` is run a, ``other_id`` run b."""
        a = run_resource(await self._run(caller, run_id))
        b = run_resource(await self._run(caller, other_id))
        return compare_runs(a, b)

    async def summary(self, caller: Caller, run_id: str) -> dict[str, Any]:
        run = await self._run(caller, run_id)
        counts = await self.events.counts(run_id)
        first_work = await self.events.first_time(run_id, sources=("runner", "worker"))
        by_type: dict[str, int] = {}
        log_lines: dict[str, int] = {}
        for event_type, detail, count in counts:
            by_type[event_type] = by_type.get(event_type, 0) + count
            if event_type in ("log", "console.line"):
                key = str(detail or ("info" if event_type == "log" else "stdout"))
                log_lines[key] = log_lines.get(key, 0) + count
        return {
            "run_id": run_id,
            "status": run["status"],
            "pipeline": run["pipeline"],
            "attempts": run["attempt"],
            "duration_ms": ms_between(run["started_at"] or run["created_at"], run["completed_at"]),
            "queue_wait_ms": ms_between(run["queued_at"] or run["created_at"], run["started_at"]),
            "time_to_first_event_ms": ms_between(run["created_at"], first_work),
            "steps": await self._steps(run),
            "environment": self._environment_summary(run),
            "events": {"total": sum(by_type.values()), "by_type": by_type},
            "log_lines": log_lines,
            "artifacts": 0,
            "usage": run["usage"],
            "metrics": run["metrics"],
        }

    def _environment_summary(self, run: dict[str, Any]) -> dict[str, Any] | None:
        build = self._build(run)
        if build is None:
            return None
        return {
            "key": build["environment_key"],
            "reused": build["reused"],
            "build_id": build["build_id"],
            "build_duration_ms": build["build_duration_ms"],
        }

    async def _environment_details(self, run: dict[str, Any]) -> dict[str, Any] | None:
        """The environment the run used: the summary's, with its interpreter and the packages
        installed in it (while it is kept)."""
        build, summary = self._build(run), self._environment_summary(run)
        if build is None or summary is None:
            return None
        record = None
        if self.environment is not None:
            record = await self.environment(build["environment_key"])
        return {
            **summary,
            "python": build["python"],
            "interpreter": build["interpreter"],
            "packages": record["packages"] if record else None,
        }

    async def diagnostics(self, caller: Caller, run_id: str) -> dict[str, Any]:
        run = await self._run(caller, run_id)
        async with self.db.read() as conn:
            leases = await repo.leases_of(conn, run_id)
        errors = [{"source": "run", **run["error"]}] if run["error"] else []
        errors += [
            {"source": "step", "step": step["name"], "attempt": step["attempt"], **step["error"]}
            for step in run["steps"]
            if step.get("error")
        ]
        return {
            "run_id": run_id,
            "status": run["status"],
            "runner_id": run["runner_id"],
            "current_lease": (
                {"id": run["lease_id"], "expires_at": isoformat(run["lease_expires_at"])}
                if run["lease_id"]
                else None
            ),
            "attempts": [
                {
                    "attempt": lease["attempt"],
                    "lease_id": lease["id"],
                    "runner_id": lease["runner_id"],
                    "granted_at": isoformat(lease["granted_at"]),
                    "expires_at": isoformat(lease["expires_at"]),
                    "ended_at": isoformat(lease["ended_at"]),
                    "end_reason": lease["end_reason"],
                }
                for lease in leases
            ],
            "max_attempts": run["max_attempts"],
            "environment": await self._environment_details(run),
            "steps": await self._steps(run),
            "errors": errors,
            "timing": {
                "created_at": isoformat(run["created_at"]),
                "queue_wait_ms": ms_between(
                    run["queued_at"] or run["created_at"], run["started_at"]
                ),
                "run_ms": ms_between(run["started_at"], run["completed_at"]),
                "total_ms": ms_between(run["created_at"], run["completed_at"]),
            },
        }
