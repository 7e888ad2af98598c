"""Evaluations (DESIGN §10): one ``extract`` run per prompt version x config x document, and
their results per prompt version x config, read live from the runs as they finish.

An evaluation is created all or nothing: every id is checked and every run admitted by the
workspace's quota in one transaction. Its results are computed when asked, from the runs'
rows (status, metrics, usage), so they are never stale; the SSE form polls them.
"""

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

from runyard.audit.service import AuditService
from runyard.clock import isoformat, utcnow
from runyard.context import Caller
from runyard.db.engine import Database
from runyard.extraction import repo
from runyard.extraction.schemas import (
    MAX_EVALUATION_RUNS,
    EvaluationCreate,
    PromptVersionRef,
)
from runyard.extraction.service import ExtractionService, check_variables
from runyard.extraction.tables import evaluation_runs, evaluations
from runyard.http.pagination import decode_cursor, page_of
from runyard.http.sse import KEEPALIVE, frame, retry_hint
from runyard.ids import new_id
from runyard.pipelines.service import PipelineService
from runyard.problems import InvalidInput, NotFound
from runyard.runs.schemas import RunCreate
from runyard.runs.service import RunService
from runyard.runs.states import TERMINAL

PIPELINE = "extract"
FAILED = frozenset({"failed", "cancelled", "rejected"})
#: how often a live evaluation stream reads its runs again, and sends a keep-alive
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0


def summary_resource(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "evaluation",
        "workspace_id": row["workspace_id"],
        "name": row["name"],
        "prompt_versions": row["prompt_versions"],
        "config_ids": row["config_ids"],
        "document_ids": row["document_ids"],
        "created_by": row["created_by"],
        "created_at": isoformat(row["created_at"]),
    }


class EvaluationService:
    def __init__(
        self,
        db: Database,
        runs: RunService,
        pipelines: PipelineService,
        extraction: ExtractionService,
        audit: AuditService,
    ) -> None:
        self.db = db
        self.runs = runs
        self.pipelines = pipelines
        self.extraction = extraction
        self.audit = audit

    async def create(self, caller: Caller, body: EvaluationCreate) -> dict[str, Any]:
        refs = [
            ref if isinstance(ref, PromptVersionRef) else PromptVersionRef(prompt_id=ref)
            for ref in body.prompt_versions
        ]
        _distinct("config_ids", body.config_ids)
        _distinct("document_ids", body.document_ids)
        total = len(refs) * len(body.config_ids) * len(body.document_ids)
        if total > MAX_EVALUATION_RUNS:
            raise InvalidInput(
                f"an evaluation makes at most {MAX_EVALUATION_RUNS} runs, not {total} "
                "(prompt versions x configs x documents)",
                code="evaluation_too_large",
            )
        pipeline = await self.pipelines.ensure_builtin(caller.workspace_id, PIPELINE)
        evaluation_id = new_id("evl")
        async with self.db.write() as tx:
            versions = [
                await self.extraction.resolve_version(tx.conn, caller, ref.prompt_id, ref.version)
                for ref in refs
            ]
            chosen = [{"prompt_id": v["prompt_id"], "version": v["version"]} for v in versions]
            _distinct("prompt_versions", [f"{v['prompt_id']}@{v['version']}" for v in chosen])
            await self.extraction.require_configs(tx.conn, caller, body.config_ids)
            await self.extraction.require_documents(tx.conn, caller, body.document_ids)
            for version in versions:
                check_variables(version, body.variables)
            row = {
                "id": evaluation_id,
                "workspace_id": caller.workspace_id,
                "name": body.name,
                "prompt_versions": chosen,
                "config_ids": body.config_ids,
                "document_ids": body.document_ids,
                "created_by": caller.actor,
                "created_at": utcnow(),
            }
            await repo.insert(tx.conn, evaluations, row)
            links = []
            for version in chosen:
                for config_id in body.config_ids:
                    for document_id in body.document_ids:
                        run_input: dict[str, Any] = {
                            "prompt_id": version["prompt_id"],
                            "prompt_version": version["version"],
                            "config_id": config_id,
                            "document_id": document_id,
                        }
                        if body.variables:
                            run_input["variables"] = body.variables
                        run = await self.runs.create_in(
                            tx,
                            caller,
                            pipeline,
                            RunCreate(
                                pipeline_id=pipeline["id"],
                                input=run_input,
                                metadata={"evaluation_id": evaluation_id},
                            ),
                        )
                        links.append(
                            {
                                "evaluation_id": evaluation_id,
                                "run_id": run["id"],
                                "prompt_id": version["prompt_id"],
                                "prompt_version": version["version"],
                                "config_id": config_id,
                                "document_id": document_id,
                            }
                        )
            await repo.insert(tx.conn, evaluation_runs, links)
            await self.audit.record(
                tx,
                caller,
                "evaluation.create",
                "evaluation",
                evaluation_id,
                {"runs": len(links), "prompt_versions": chosen},
            )
        return await self.get(caller, evaluation_id)

    async def get(self, caller: Caller, evaluation_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await repo.get(conn, evaluations, caller.workspace_id, evaluation_id)
            if row is None:
                raise NotFound(f"evaluation {evaluation_id} not found", code="evaluation_not_found")
            results = await repo.evaluation_results(conn, evaluation_id)
        return {**summary_resource(row), **aggregate(row, results)}

    async def list(self, caller: Caller, *, limit: int, cursor: str | None) -> dict[str, Any]:
        after = decode_cursor(cursor)
        async with self.db.read() as conn:
            rows = await repo.page(
                conn, evaluations, caller.workspace_id, limit=limit + 1, after=after
            )
        items, next_cursor, has_more = page_of(rows, limit)
        return {
            "data": [summary_resource(r) for r in items],
            "next_cursor": next_cursor,
            "has_more": has_more,
        }

    async def stream(self, caller: Caller, evaluation_id: str) -> AsyncIterator[bytes]:
        """``evaluation`` frames, each the whole evaluation, when its results change; then
        ``stream.end`` with its status once every run has finished."""
        current = await self.get(caller, evaluation_id)  # a 404 before the stream starts

        async def frames() -> AsyncIterator[bytes]:
            nonlocal current
            yield retry_hint(2000)
            yield frame("evaluation", current)
            quiet = 0.0
            while current["status"] != "completed":  # ends when its runs do (each is bounded)
                await asyncio.sleep(POLL_SECONDS)
                latest = await self.get(caller, evaluation_id)
                if latest != current:
                    current = latest
                    yield frame("evaluation", current)
                    quiet = 0.0
                else:
                    quiet += POLL_SECONDS
                    if quiet >= KEEPALIVE_SECONDS:
                        yield KEEPALIVE
                        quiet = 0.0
            yield frame("stream.end", {"status": current["status"]})

        return frames()


def aggregate(evaluation: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The evaluation's run counts and its results per prompt version x config, in the order
    they were asked for: means of precision, recall, F1 and accuracy over scored runs, total
    cost and tokens over all runs, p50 latency (nearest rank) over completed runs."""
    cells: dict[tuple[str, int, str], list[dict[str, Any]]] = {
        (version["prompt_id"], version["version"], config_id): []
        for version in evaluation["prompt_versions"]
        for config_id in evaluation["config_ids"]
    }
    for run in runs:
        key = (run["prompt_id"], run["prompt_version"], run["config_id"])
        cells.setdefault(key, []).append(run)
    statuses = [run["status"] for run in runs]
    pending = sum(1 for status in statuses if status not in TERMINAL)
    return {
        "status": "running" if pending else "completed",
        "runs": {
            "total": len(runs),
            "pending": pending,
            "completed": statuses.count("completed"),
            "failed": sum(1 for status in statuses if status in FAILED),
        },
        "results": [_cell(key, members) for key, members in cells.items()],
    }


def _cell(key: tuple[str, int, str], runs: list[dict[str, Any]]) -> dict[str, Any]:
    completed = [run for run in runs if run["status"] == "completed"]
    scored = [run["metrics"] for run in completed if _number(run["metrics"].get("f1"))]
    latencies = sorted(
        float(run["metrics"]["latency_ms"])
        for run in completed
        if _number(run["metrics"].get("latency_ms"))
    )
    costs = [run["usage"].get("cost_usd") for run in runs if _number(run["usage"].get("cost_usd"))]
    return {
        "prompt_id": key[0],
        "prompt_version": key[1],
        "config_id": key[2],
        "runs": len(runs),
        "pending": sum(1 for run in runs if run["status"] not in TERMINAL),
        "completed": len(completed),
        "failures": sum(1 for run in runs if run["status"] in FAILED),
        "scored": len(scored),
        **{name: _mean([float(m[name]) for m in scored]) for name in _MEANS},
        "cost_usd": round(sum(costs), 10) if costs else None,
        "p50_latency_ms": latencies[math.ceil(0.5 * len(latencies)) - 1] if latencies else None,
        "input_tokens": sum(int(run["usage"].get("input_tokens") or 0) for run in runs),
        "output_tokens": sum(int(run["usage"].get("output_tokens") or 0) for run in runs),
    }


_MEANS = ("precision", "recall", "f1", "accuracy")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _distinct(field: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise InvalidInput(
                f"{field} names {value} twice",
                errors=[{"loc": ["body", field], "msg": f"{value} appears twice"}],
            )
        seen.add(value)
