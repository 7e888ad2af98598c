"""The two HTTP shapes under test (Runyard's API and the bare app's) plus setup helpers.

Both servers receive byte-identical request bodies; only the paths differ,
and only Runyard needs a pipeline and run-status transitions.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.httpraw import RawConnection, Response, json_body

PIPELINE = "bench"
CREATE_RUN_BODY = json_body({"pipeline": PIPELINE, "input": {"n": 1}})


class SetupError(RuntimeError):
    """A setup request did not get the answer the benchmark needs."""


@dataclass(frozen=True)
class Api:
    """Paths and capabilities of one server flavour."""

    name: str
    create_path: str
    run_path: str  # format string with {id}
    events_path: str  # format string with {id}
    status_path: str | None  # format string with {id}; None when not supported
    pipelines_path: str | None
    stream_path: str | None  # SSE, format string with {id}

    def run(self, run_id: str) -> str:
        return self.run_path.format(id=run_id)

    def events(self, run_id: str) -> str:
        return self.events_path.format(id=run_id)

    def stream(self, run_id: str) -> str:
        if self.stream_path is None:
            raise SetupError(f"{self.name} has no event stream")
        return self.stream_path.format(id=run_id)


RUNYARD = Api(
    name="runyard",
    create_path="/v1/runs",
    run_path="/v1/runs/{id}",
    events_path="/v1/runner/runs/{id}/events",
    status_path="/v1/runner/runs/{id}/status",
    pipelines_path="/v1/pipelines",
    stream_path="/v1/runs/{id}/events?stream=true",
)
BARE = Api(
    name="bare",
    create_path="/runs",
    run_path="/runs/{id}",
    events_path="/runs/{id}/events",
    status_path=None,
    pipelines_path=None,
    stream_path=None,
)


def events_body(count: int, tag: str = "bench") -> bytes:
    """A batch of ``count`` small log events, as a runner would send them."""
    events = [
        {"type": "log", "data": {"level": "info", "message": f"{tag} event {i} of {count}"}}
        for i in range(count)
    ]
    return json_body({"events": events})


def _expect(response: Response, accepted: tuple[int, ...], what: str) -> Response:
    if response.status not in accepted:
        raise SetupError(f"{what}: HTTP {response.status} {response.body[:300]!r}")
    return response


async def prepare(api: Api, conn: RawConnection, name: str = PIPELINE) -> None:
    """Create a benchmark pipeline (``worker`` executor) where the API has pipelines
    (idempotent)."""
    if api.pipelines_path is None:
        return
    payload = {"name": name, "executor": {"type": "worker"}}
    response = await conn.request("POST", api.pipelines_path, payload)
    _expect(response, (200, 201, 409), "create pipeline")


async def create_runs(api: Api, conn: RawConnection, count: int) -> list[str]:
    """Create ``count`` runs sequentially and return their ids."""
    ids: list[str] = []
    for _ in range(count):
        response = await conn.send(conn.encode("POST", api.create_path, CREATE_RUN_BODY))
        ids.append(str(_expect(response, (200, 201), "create run").json()["id"]))
    return ids


async def set_status(api: Api, conn: RawConnection, run_id: str, status: str) -> None:
    """Move a run to ``status`` through the runner API (no-op for the bare app)."""
    if api.status_path is None:
        return
    path = api.status_path.format(id=run_id)
    _expect(await conn.request("POST", path, {"status": status}), (200,), f"status {status}")


async def append_events(api: Api, conn: RawConnection, run_id: str, body: bytes) -> Response:
    """Post one pre-encoded event batch; raises unless the server answers 200."""
    response = await conn.send(conn.encode("POST", api.events(run_id), body))
    return _expect(response, (200,), "append events")
