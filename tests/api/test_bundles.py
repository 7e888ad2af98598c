"""Pipeline bundles (DESIGN §7) on each database: zip or gzipped tar as the body or a multipart
file, kept under their SHA-256; malicious or oversize ones refused with 400/413."""

import hashlib

import httpx
import pytest
from fastapi import FastAPI

from tests.bundle_support import tar_of, zip_of
from tests.support import assert_problem, make_pipeline

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
CODE = {"steps/__init__.py": b"", "steps/tasks.py": b"def run(ctx, input):\n    return 1\n"}


async def test_a_bundle_is_kept_and_described(app: FastAPI, client: httpx.AsyncClient) -> None:
    pipeline = await make_pipeline(client)
    data = zip_of(CODE)
    uploaded = await client.post(
        f"/v1/pipelines/{pipeline['id']}/bundle",
        content=data,
        headers={"content-type": "application/zip"},
    )
    assert uploaded.status_code == 201, uploaded.text
    bundle = uploaded.json()
    assert bundle["sha256"] == hashlib.sha256(data).hexdigest()
    assert (bundle["size_bytes"], bundle["format"]) == (len(data), "zip")
    assert bundle["files"] == ["steps/__init__.py", "steps/tasks.py"]
    assert (await client.get(f"/v1/pipelines/{pipeline['name']}/bundle")).json() == bundle
    stored = app.state.services.blobs.read(
        f"pipelines/{pipeline['id']}/bundles/{bundle['sha256']}.zip"
    )
    assert b"".join([chunk async for chunk in stored]) == data

    # a new upload replaces it: multipart this time, a gzipped tar
    tarred = tar_of({**CODE, "README.md": b"# steps"})
    replaced = await client.post(
        f"/v1/pipelines/{pipeline['id']}/bundle",
        files={"file": ("steps.tar.gz", tarred, "application/gzip")},
    )
    assert replaced.status_code == 201, replaced.text
    assert replaced.json()["format"] == "tar.gz"
    assert "README.md" in replaced.json()["files"]
    current = (await client.get(f"/v1/pipelines/{pipeline['id']}/bundle")).json()
    assert current["sha256"] == hashlib.sha256(tarred).hexdigest()
    audit = (await client.get("/v1/audit", params={"action": "pipeline.bundle.upload"})).json()
    assert len(audit["data"]) == 2

    assert (await client.delete(f"/v1/pipelines/{pipeline['id']}")).status_code == 204
    gone = await client.get(f"/v1/pipelines/{pipeline['id']}/bundle")
    assert_problem(gone, 404, "pipeline_not_found")


async def test_malicious_bundles_are_refused(client: httpx.AsyncClient) -> None:
    pipeline = await make_pipeline(client)
    path = f"/v1/pipelines/{pipeline['id']}/bundle"
    cases = [
        zip_of({"../../evil.py": b"x"}),
        tar_of({"/etc/evil": b"x"}),
        tar_of({}, symlinks={"steps/escape": "../../../etc/passwd"}),
        zip_of({}, links={"escape": "/etc/passwd"}),
    ]
    for data in cases:
        refused = await client.post(path, content=data, headers={"content-type": "application/zip"})
        assert_problem(refused, 400, "bundle_unsafe")
    not_an_archive = await client.post(path, files={"file": ("x.zip", b"hello")})
    assert_problem(not_an_archive, 400, "bundle_invalid")
    assert_problem(await client.post(path, files={"other": ("x", b"y")}), 400, "invalid_input")
    assert_problem(await client.get(path), 404, "bundle_not_found")
    missing = await client.post(
        "/v1/pipelines/pl_missing/bundle",
        content=zip_of(CODE),
        headers={"content-type": "application/zip"},
    )
    assert_problem(missing, 404, "pipeline_not_found")


@pytest.mark.settings(bundle_max_bytes=2000, bundle_max_unpacked_bytes=50_000)
async def test_oversize_bundles_are_413(client: httpx.AsyncClient) -> None:
    pipeline = await make_pipeline(client)
    path = f"/v1/pipelines/{pipeline['id']}/bundle"
    noise = hashlib.shake_256(b"noise").digest(5000)  # does not compress
    big = zip_of({"noise.bin": noise})
    assert len(big) > 2000
    assert_problem(
        await client.post(path, content=big, headers={"content-type": "application/zip"}),
        413,
        "payload_too_large",
    )
    assert_problem(
        await client.post(path, files={"file": ("big.zip", big)}), 413, "payload_too_large"
    )
    unpacks_big = tar_of({"zeros.bin": bytes(60_000)})  # small gzipped, 60 KB unpacked
    assert len(unpacks_big) < 2000
    assert_problem(
        await client.post(path, content=unpacks_big, headers={"content-type": "application/gzip"}),
        413,
        "payload_too_large",
    )
