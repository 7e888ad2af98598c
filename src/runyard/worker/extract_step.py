"""The ``extract`` step kind (DESIGN §7, §10): a prompt version and a document → a model
asked for one JSON object → the object as the step's output, scored field by field against
the document's ground truth.

``with``: ``prompt_id``, ``prompt_version`` (absent: the latest), ``config_id``,
``document_id``, ``variables``; each absent one is taken from the run input, which is how the
built-in ``extract`` pipeline runs it.

The step returns the output and the run's metrics: ``latency_ms``
(the whole model call, first byte sent to last byte read), and with ground truth
``precision``, ``recall``, ``f1``, ``accuracy`` and the field counts behind them. An
``extraction.scored`` event says what was scored and which fields were wrong, missing or
extra; without ground truth it carries the note ``ground_truth_missing`` and the run
completes with its output and no accuracy metrics.
"""

import time
from typing import Any, Protocol

from runyard.events.service import NewEvent
from runyard.extraction.prompting import RenderFailure, messages
from runyard.extraction.scoring import differences, score
from runyard.extraction.service import ExtractionJob
from runyard.problems import DomainError
from runyard.worker.llm_step import AddUsage, ModelCalls, parse_json, schema_validator, stream_text
from runyard.worker.steps import StepContext, StepFailed

KEYS = ("prompt_id", "prompt_version", "config_id", "document_id", "variables")
REQUIRED = ("prompt_id", "config_id", "document_id")


class Jobs(Protocol):
    async def job(self, workspace_id: str, value: dict[str, Any]) -> ExtractionJob: ...


async def run_extract(
    options: dict[str, Any],
    ctx: StepContext,
    calls: ModelCalls,
    jobs: Jobs,
    workspace_id: str,
    add_usage: AddUsage,
) -> tuple[Any, dict[str, Any]]:
    """(output, metrics) of one extraction; its usage is added to the run as soon as the
    answer is in, so an answer that is not a JSON object still counts what it cost."""
    spec = {key: options.get(key, ctx.input.get(key)) for key in KEYS}
    spec = {key: value for key, value in spec.items() if value is not None}
    missing = [key for key in REQUIRED if key not in spec]
    if missing:
        raise StepFailed(
            "invalid_step",
            f"an extract step needs {', '.join(missing)} (in `with` or the run input)",
        )
    try:
        job = await jobs.job(workspace_id, spec)
        model = await calls.models.resolve(workspace_id, job.model_id)
        conversation = messages(job.template, job.variables, job.document, job.json_schema)
    except DomainError as exc:
        raise StepFailed(exc.code, exc.detail) from exc
    except RenderFailure as exc:
        raise StepFailed("template_error", str(exc)) from exc
    validator = schema_validator(job.json_schema) if job.json_schema is not None else None
    started = time.perf_counter()
    text, usage = await stream_text(
        model,
        conversation,
        ctx,
        calls,
        temperature=job.temperature,
        max_tokens=job.max_tokens,
        response_format=job.response_format,
    )
    metrics: dict[str, Any] = {"latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    await add_usage(usage)
    output = parse_json(text, validator)
    if not isinstance(output, dict):
        raise StepFailed(
            "llm_output_invalid",
            f"the model's answer is JSON but not an object: {text[:200]!r}",
        )
    scored: dict[str, Any] = {
        "prompt_id": job.prompt_id,
        "prompt_version": job.prompt_version,
        "config_id": job.config_id,
        "document_id": job.document_id,
    }
    if job.ground_truth is None:
        scored.update(scored=False, note="ground_truth_missing")
    else:
        result = score(output, job.ground_truth)
        metrics.update(result.metrics())
        scored.update(
            scored=True, metrics=result.metrics(), **differences(output, job.ground_truth)
        )
    ctx.buffer.put(NewEvent("extraction.scored", scored, step=ctx.step))
    return output, metrics
