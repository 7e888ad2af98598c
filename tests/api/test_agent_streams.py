"""A session's SSE stream over real sockets: it stays open between turns, and a client that
reconnects with Last-Event-ID gets exactly what it missed (DESIGN §6.3, §9)."""

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.agent_support import ready_session, say
from tests.llm_fake import FakeModelServer, Reply
from tests.support import Frame, SSEReader, wait_for_status

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(60),
    pytest.mark.settings(worker_enabled=True),
]


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


async def _read_turn(
    live: httpx.AsyncClient, path: str, headers: dict[str, str], run_id: str
) -> list[Frame]:
    """Frames up to this turn's run.completed; the stream is still open then."""
    frames: list[Frame] = []
    async with live.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        async for frame in SSEReader(response).frames():
            frames.append(frame)
            assert frame.event != "stream.end"
            if frame.event == "run.completed" and frame.data["run_id"] == run_id:
                break
    return frames


async def test_a_session_stream_resumes_across_two_turns(
    live: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    agent, session = await ready_session(live, model_server)
    path = f"/v1/agents/{agent['id']}/sessions/{session['id']}/events"
    sse = {"Accept": "text/event-stream"}
    model_server.script(Reply(text="first answer"), Reply(text="second answer"))

    first = (await say(live, agent["id"], session["id"], "one")).json()["run_id"]
    seen = await _read_turn(live, path, sse, first)
    assert [f.id for f in seen] == list(range(1, len(seen) + 1))
    assert seen[0].event == "message.user"
    last = seen[-1].id
    assert last is not None

    second = (await say(live, agent["id"], session["id"], "two")).json()["run_id"]
    await wait_for_status(live, second, "completed")
    resumed = await _read_turn(live, path, {**sse, "Last-Event-ID": str(last)}, second)
    assert [f.id for f in resumed] == list(range(last + 1, last + 1 + len(resumed)))
    assert resumed[0].event == "message.user"
    assert resumed[0].data["data"]["message"]["content"] == "two"
    assert {f.data["run_id"] for f in resumed} == {second}
    text = "".join(f.data["data"]["delta"] for f in resumed if f.event == "text.delta")
    assert text == "second answer"

    # the whole history is the two reads together, once each
    page = (await live.get(path, params={"limit": 1000})).json()
    assert [e["sequence"] for e in page["data"]] == [f.id for f in seen + resumed]


async def test_the_stream_of_a_deleted_session_ends(
    live: httpx.AsyncClient, model_server: FakeModelServer
) -> None:
    agent, session = await ready_session(live, model_server)
    path = f"/v1/agents/{agent['id']}/sessions/{session['id']}"
    await say(live, agent["id"], session["id"], "one")
    frames: list[Frame] = []
    sse = {"Accept": "text/event-stream"}
    async with asyncio.timeout(20), live.stream("GET", f"{path}/events", headers=sse) as r:
        async for frame in SSEReader(r).frames():
            frames.append(frame)
            if frame.event == "run.completed":  # the stream stays open after a turn...
                assert (await live.delete(path)).status_code == 204
            if frame.event == "stream.end":  # ...until the session is deleted
                break
    assert frames[-1].event == "stream.end"
    assert frames[-1].data == {"status": "deleted", "last_sequence": frames[-2].id}
    assert (await live.get(f"{path}/events")).status_code == 404
