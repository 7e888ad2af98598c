"""Artifacts (DESIGN §5.3, §8): uploads and registrations into the blob store, downloads with
ETag and Range, outputs by path, limits and traversal, on both databases."""

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from runyard.settings import Settings
from tests.support import assert_problem, make_pipeline, make_run, wait_for_status

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
BODY = b"0123456789" * 100


@pytest.fixture(params=["local", "s3"])
def blobs_url(request: pytest.FixtureRequest) -> str | None:
    """Local files (the default), or a bucket on moto's S3 server."""
    return None if request.param == "local" else str(request.getfixturevalue("s3_bucket_url"))


@pytest.fixture
def settings(settings: Settings, blobs_url: str | None) -> Settings:
    """Every artifact test on each database and each blob store."""
    return settings.model_copy(update={"blobs_url": blobs_url})


async def claimed_run(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, str]]:
    await make_pipeline(client)
    run = await make_run(client)
    claim = (await client.post("/v1/runner/claim", json={})).json()
    return run, {"Authorization": f"Bearer {claim['token']}"}


async def upload(
    client: httpx.AsyncClient,
    run_id: str,
    auth: dict[str, str],
    data: bytes = BODY,
    **fields: str,
) -> httpx.Response:
    return await client.post(
        f"/v1/runner/runs/{run_id}/artifacts",
        files={"file": ("report.txt", data, "text/plain")},
        data=fields,
        headers=auth,
    )


async def test_an_upload_round_trips_with_etag_and_ranges(client: httpx.AsyncClient) -> None:
    run, auth = await claimed_run(client)
    response = await upload(client, run["id"], auth, metadata='{"pages": 3}')
    assert response.status_code == 201
    artifact = response.json()
    assert artifact["id"].startswith("art_") and artifact["size_bytes"] == len(BODY)
    assert artifact["sha256"] == hashlib.sha256(BODY).hexdigest()
    assert artifact["content_type"] == "text/plain" and artifact["metadata"] == {"pages": 3}
    assert artifact["storage_key"].startswith(f"runs/{run['id']}/")
    base = f"/v1/runs/{run['id']}/artifacts"
    assert (await client.get(base)).json()["data"] == [artifact]
    assert (await client.get(f"{base}/{artifact['id']}")).json() == artifact

    content = await client.get(f"{base}/{artifact['id']}/content")
    assert content.content == BODY and content.headers["content-length"] == str(len(BODY))
    etag = content.headers["etag"]
    assert etag == f'"{artifact["sha256"]}"'
    cached = await client.get(f"{base}/{artifact['id']}/content", headers={"If-None-Match": etag})
    assert cached.status_code == 304
    part = await client.get(f"{base}/{artifact['id']}/content", headers={"Range": "bytes=2-5"})
    assert part.status_code == 206 and part.content == b"2345"
    assert part.headers["content-range"] == f"bytes 2-5/{len(BODY)}"
    tail = await client.get(f"{base}/{artifact['id']}/content", headers={"Range": "bytes=-3"})
    assert tail.content == b"789"
    beyond = await client.get(f"{base}/{artifact['id']}/content", headers={"Range": "bytes=5000-"})
    assert beyond.status_code == 416
    events = (await client.get(f"/v1/runs/{run['id']}/events?type=artifact.created")).json()
    assert events["data"][0]["data"]["id"] == artifact["id"]
    assert_problem(await client.get(f"{base}/art_missing"), 404, "artifact_not_found")


async def test_outputs_are_addressed_by_path(client: httpx.AsyncClient) -> None:
    run, auth = await claimed_run(client)
    await upload(client, run["id"], auth, b"<h1>ok</h1>", path="reports/index.html")
    outputs = (await client.get(f"/v1/runs/{run['id']}/outputs")).json()["data"]
    assert [o["path"] for o in outputs] == ["reports/index.html"]
    page = await client.get(f"/v1/runs/{run['id']}/outputs/reports/index.html")
    assert page.content == b"<h1>ok</h1>"
    assert_problem(
        await client.get(f"/v1/runs/{run['id']}/outputs/nope.txt"), 404, "artifact_not_found"
    )


async def test_keys_cannot_leave_the_runs_prefix(app: FastAPI, client: httpx.AsyncClient) -> None:
    run, auth = await claimed_run(client)
    url = f"/v1/runner/runs/{run['id']}/artifacts"
    for path in ("../escape.txt", "/etc/passwd", "a/../../b", "a//b"):
        assert_problem(await upload(client, run["id"], auth, path=path), 400, "invalid_input")
    for key in (f"runs/{run['id']}/../other/x", "runs/run_someoneelse00/x", "/abs"):
        response = await client.post(url, json={"storage_key": key}, headers=auth)
        assert_problem(response, 400, "invalid_input")
    missing = await client.post(url, json={"storage_key": f"runs/{run['id']}/none"}, headers=auth)
    assert_problem(missing, 400, "invalid_input")

    async def chunks() -> AsyncIterator[bytes]:
        yield b"stored by the runner"

    key = f"runs/{run['id']}/external/model.bin"
    await app.state.services.blobs.put(key, chunks(), max_bytes=1000)
    registered = await client.post(
        url,
        json={"storage_key": key, "artifact_type": "model", "path": "model.bin"},
        headers=auth,
    )
    assert registered.status_code == 201 and registered.json()["size_bytes"] == 20
    download = await client.get(f"/v1/runs/{run['id']}/outputs/model.bin")
    assert download.content == b"stored by the runner"


@pytest.mark.settings(artifact_max_bytes=500)
async def test_oversize_uploads_are_refused_and_leave_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    run, auth = await claimed_run(client)
    too_big = await upload(client, run["id"], auth, b"x" * 10_000, path="big.bin")
    assert_problem(too_big, 413, "payload_too_large")
    assert (await client.get(f"/v1/runs/{run['id']}/artifacts")).json()["data"] == []
    assert await app.state.services.blobs.stat(f"runs/{run['id']}/big.bin") is None


async def test_uploads_are_fenced_and_deleted_with_their_run(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    run, auth = await claimed_run(client)
    other = await make_run(client)
    assert_problem(await upload(client, other["id"], auth), 403, "forbidden")
    artifact = (await upload(client, run["id"], auth)).json()
    await client.post(f"/v1/runs/{run['id']}/cancel", json={"force": True})
    assert_problem(await upload(client, run["id"], auth), 409, "stale_lease")
    assert (await client.delete(f"/v1/runs/{run['id']}")).status_code == 204
    assert await app.state.services.blobs.stat(artifact["storage_key"]) is None
    assert_problem(await client.get(f"/v1/runs/{run['id']}/artifacts"), 404, "run_not_found")


@pytest.mark.settings(worker_enabled=True)
async def test_files_a_step_writes_become_outputs(client: httpx.AsyncClient) -> None:
    await make_pipeline(
        client,
        steps=[
            {
                "name": "render",
                "uses": "command",
                "with": {
                    "run": "cd $RUNYARD_OUTPUT_DIR && mkdir -p site && echo hello >site/index.html",
                },
            },
            {"name": "again", "uses": "command", "with": {"run": "true"}},
        ],
    )
    run = await make_run(client)
    await wait_for_status(client, run["id"], "completed")
    outputs = (await client.get(f"/v1/runs/{run['id']}/outputs")).json()["data"]
    assert [(o["path"], o["artifact_type"]) for o in outputs] == [("site/index.html", "output")]
    page = await client.get(f"/v1/runs/{run['id']}/outputs/site/index.html")
    assert page.text == "hello\n" and page.headers["content-type"].startswith("text/html")
