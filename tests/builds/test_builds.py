"""Builds of pipeline environments (DESIGN §7) on both databases, offline: a local package
from the pipeline's bundle, made into a wheel by the server's setuptools and installed."""

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from runyard.app import create_app
from runyard.builds import repo as build_repo
from runyard.settings import Settings
from tests.build_support import GREETER, make_built_pipeline
from tests.bundle_support import zip_of
from tests.support import assert_problem, make_pipeline, make_run, read_until_end, wait_for_status

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]
FINISHED = ("completed", "failed", "cancelled")


async def wait_for_build(client: httpx.AsyncClient, build_id: str) -> dict[str, Any]:
    for _ in range(1200):
        build: dict[str, Any] = (await client.get(f"/v1/builds/{build_id}")).json()
        if build["status"] in ("ready", "failed", "cancelled"):
            return build
        await asyncio.sleep(0.1)
    raise AssertionError(f"build {build_id} did not finish")


async def events_of(client: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    return list((await client.get(f"{path}/events?limit=1000")).json()["data"])


async def start_build(client: httpx.AsyncClient, pipeline_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/v1/pipelines/{pipeline_id}/builds", json=body)
    assert response.status_code == 201, response.text
    build: dict[str, Any] = response.json()
    return build


def environment_dirs(settings: Settings) -> list[Path]:
    root = Path(settings.data_dir) / "environments"
    return sorted(build for key in root.iterdir() for build in key.iterdir())


async def settled_dirs(settings: Settings, count: int) -> list[Path]:
    """The environment directories once there are ``count``: a build reports ``ready``, then
    deletes what it replaced and collects old ones."""
    for _ in range(100):
        if len(found := environment_dirs(settings)) == count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{environment_dirs(settings)} are not {count} directories")


@pytest.mark.settings(build_tool="pip")
async def test_a_local_package_builds_offline_and_streams_its_lines(
    client: httpx.AsyncClient,
) -> None:
    pipeline = await make_built_pipeline(client)
    response = await client.post(f"/v1/pipelines/{pipeline['id']}/builds", json={})
    assert response.status_code == 201, response.text
    build = response.json()
    assert response.headers["location"] == f"/v1/builds/{build['id']}"
    assert build["object"] == "build" and build["status"] in ("queued", "building")
    assert build["environment_key"].startswith("env_") and build["reused"] is False
    final = await wait_for_build(client, build["id"])
    assert final["status"] == "ready", final["error"]
    assert final["duration_ms"] > 0 and final["error"] is None

    events = await events_of(client, f"/v1/builds/{build['id']}")
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    types = [e["type"] for e in events]
    assert types[:2] == ["build.created", "build.started"] and types[-1] == "build.completed"
    lines = [e["data"] for e in events if e["type"] == "console.line"]
    assert lines and all(line["scope"] == "build" for line in lines)
    assert "Successfully installed greeter-1.2.0" in [line["text"] for line in lines]
    assert events[-1]["data"]["reused"] is False

    # the stream of a finished build replays everything and ends
    frames = await read_until_end(client, f"/v1/builds/{build['id']}/events?stream=true")
    assert [f.id for f in frames[:-1]] == [e["sequence"] for e in events]
    assert frames[-1].event == "stream.end"
    assert frames[-1].data == {"status": "ready", "last_sequence": len(events)}
    listed = (await client.get(f"/v1/pipelines/{pipeline['id']}/builds")).json()["data"]
    assert [b["id"] for b in listed] == [build["id"]]


@pytest.mark.settings(build_tool="pip", worker_enabled=True)
async def test_a_run_builds_its_environment_then_runs_python_and_command_steps_in_it(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await make_built_pipeline(client)
    run = await make_run(client, pipeline="greet", input={"name": "Ada"})
    final = await wait_for_status(client, run["id"], *FINISHED, seconds=150)
    assert final["status"] == "completed", final["error"]
    assert [s["name"] for s in final["steps"]] == ["build", "greet", "report"]
    assert final["steps"][0]["output"]["reused"] is False
    greet = final["output"]["greet"]
    assert greet["greeting"] == "Hello, Ada"
    (environment,) = environment_dirs(settings)
    assert Path(greet["python"]).parent == environment / "venv" / "bin"
    assert Path(greet["cwd"]).name == "greet"  # a working directory of its own

    events = await events_of(client, f"/v1/runs/{run['id']}")
    assert "run.waiting_for_build" in [e["type"] for e in events]
    build_lines = [e for e in events if e["type"] == "console.line" and e["step"] == "build"]
    assert "Successfully installed greeter-1.2.0" in [e["data"]["text"] for e in build_lines]
    assert all(e["data"]["scope"] == "build" for e in build_lines)
    report = [e["data"].get("text") for e in events if e["step"] == "report"]
    assert f"report from {environment / 'venv'}" in report
    assert "FLAVOUR mint" in report  # the environment's variables
    assert "greeting Ada" in [e["data"].get("message") for e in events if e["type"] == "log"]
    assert {"name": "letters", "value": 3} in [e["data"] for e in events if e["type"] == "metric"]
    outputs = (await client.get(f"/v1/runs/{run['id']}/outputs")).json()["data"]
    assert [o["path"] for o in outputs] == ["greeting.txt"]
    content = await client.get(f"/v1/runs/{run['id']}/outputs/greeting.txt")
    assert content.text == "Hello, Ada!\n"

    summary = (await client.get(f"/v1/runs/{run['id']}/summary")).json()
    assert summary["environment"]["reused"] is False
    assert summary["environment"]["build_duration_ms"] > 0
    assert [(s["name"], s.get("exit_code")) for s in summary["steps"]] == [
        ("build", None),
        ("greet", None),
        ("report", 0),
    ]
    diagnostics = (await client.get(f"/v1/runs/{run['id']}/diagnostics")).json()
    assert diagnostics["environment"]["key"] == summary["environment"]["key"]
    assert diagnostics["environment"]["interpreter"] == greet["python"]
    assert {"name": "greeter", "version": "1.2.0"} in diagnostics["environment"]["packages"]

    # the next run reuses the environment: no build, no waiting
    again = await make_run(client, pipeline="greet", input={"name": "Grace"})
    second = await wait_for_status(client, again["id"], *FINISHED, seconds=60)
    assert second["status"] == "completed", second["error"]
    assert second["steps"][0]["output"]["reused"] is True
    assert "run.waiting_for_build" not in [
        e["type"] for e in await events_of(client, f"/v1/runs/{again['id']}")
    ]
    assert len(environment_dirs(settings)) == 1


@pytest.mark.settings(build_tool="pip")
async def test_a_second_pipeline_with_an_identical_spec_reuses_the_environment(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    first = await make_built_pipeline(client, "first")
    built = await wait_for_build(client, (await start_build(client, first["id"]))["id"])
    assert built["status"] == "ready", built["error"]
    second = await make_built_pipeline(client, "second")
    reused = await start_build(client, second["id"])
    assert reused["status"] == "ready" and reused["reused"] is True
    assert reused["environment_key"] == built["environment_key"]
    events = await events_of(client, f"/v1/builds/{reused['id']}")
    assert [e["type"] for e in events] == ["build.created", "build.completed"]
    assert events[-1]["data"]["reused"] is True
    assert events[-1]["data"]["environment_build_id"] == built["id"]
    assert len(environment_dirs(settings)) == 1

    # another bundle is another environment; force makes a fresh one of the same spec
    third = await make_built_pipeline(
        client, "third", bundle=zip_of({**GREETER, "extra.txt": b"x"})
    )
    other = await start_build(client, third["id"])
    assert other["environment_key"] != built["environment_key"]
    forced = await wait_for_build(
        client, (await start_build(client, first["id"], force=True))["id"]
    )
    assert forced["status"] == "ready" and forced["reused"] is False
    await wait_for_build(client, other["id"])
    await settled_dirs(settings, 2)  # the forced build replaced the first


@pytest.mark.settings(build_tool="pip")
async def test_concurrent_builds_of_one_spec_wait_for_each_other(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    pipeline = await make_built_pipeline(client)
    first, second = await asyncio.gather(
        start_build(client, pipeline["id"]), start_build(client, pipeline["id"])
    )
    refused = await client.post(f"/v1/pipelines/{pipeline['id']}/builds", json={"wait": False})
    problem = assert_problem(refused, 409, "build_in_progress")
    assert problem["build_id"] in (first["id"], second["id"])
    done = [await wait_for_build(client, b["id"]) for b in (first, second)]
    assert sorted(b["reused"] for b in done) == [False, True]
    assert all(b["status"] == "ready" for b in done)
    waiter = next(b for b in done if b["reused"])
    builder = next(b for b in done if not b["reused"])
    lines = [
        e["data"]["text"]
        for e in await events_of(client, f"/v1/builds/{waiter['id']}")
        if e["type"] == "console.line"
    ]
    assert f"waiting for build {builder['id']} of this environment" in lines
    assert waiter["completed_at"] >= builder["completed_at"]
    assert len(environment_dirs(settings)) == 1


@pytest.mark.settings(build_tool="pip", worker_enabled=True)
async def test_a_failing_requirement_fails_the_build_and_the_run_and_is_never_reused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    missing = "not-there @ file:///nonexistent/not-there"
    pipeline = await make_built_pipeline(
        client, environment={"requirements": [missing], "packages": ["greeter"]}
    )
    build = await wait_for_build(client, (await start_build(client, pipeline["id"]))["id"])
    assert build["status"] == "failed"
    assert build["error"]["code"] == "build_command_failed"
    events = await events_of(client, f"/v1/builds/{build['id']}")
    assert events[-1]["type"] == "build.failed"
    errors = [e["data"]["text"] for e in events if e["data"].get("stream") == "stderr"]
    assert any("nonexistent/not-there" in text for text in errors), errors
    assert not (Path(settings.data_dir) / "environments" / build["environment_key"]).exists()

    run = await make_run(client, pipeline="greet", input={"name": "Ada"})
    final = await wait_for_status(client, run["id"], *FINISHED, seconds=120)
    assert final["status"] == "failed"
    assert final["error"]["code"] == "build_failed" and final["error"]["step"] == "build"
    assert [(s["name"], s["status"]) for s in final["steps"]] == [("build", "failed")]
    run_events = await events_of(client, f"/v1/runs/{run['id']}")
    waiting = next(e for e in run_events if e["type"] == "run.waiting_for_build")
    assert waiting["data"]["build_id"] != build["id"]  # built again, not the failure reused
    run_errors = [e["data"]["text"] for e in run_events if e["data"].get("stream") == "stderr"]
    assert any("nonexistent/not-there" in text for text in run_errors)
    again = await wait_for_build(client, waiting["data"]["build_id"])
    assert again["status"] == "failed" and again["run_id"] == run["id"]


@pytest.mark.settings(build_tool="pip", worker_enabled=True)
async def test_a_failing_step_in_an_environment_shows_its_traceback_and_exit_code(
    client: httpx.AsyncClient,
) -> None:
    await make_built_pipeline(
        client,
        steps=[
            {"name": "check", "uses": "command", "with": {"run": "python -c 'import greeter'"}},
            {"name": "greet", "uses": "python", "with": {"function": "greeter:fail"}},
        ],
    )
    run = await make_run(client, pipeline="greet", input={})
    final = await wait_for_status(client, run["id"], *FINISHED, seconds=120)
    assert final["error"] == {
        "code": "step_error",
        "message": "RuntimeError: no greeting today",
        "step": "greet",
    }
    events = await events_of(client, f"/v1/runs/{run['id']}")
    stderr = [e["data"]["text"] for e in events if e["data"].get("stream") == "stderr"]
    assert "RuntimeError: no greeting today" in stderr
    assert any(line.startswith("Traceback") for line in stderr)

    await make_pipeline(
        client,
        name="exits",
        environment={},
        steps=[{"name": "exit", "uses": "command", "with": {"run": "exit 3"}}],
    )
    run = await make_run(client, pipeline="exits", input={})
    final = await wait_for_status(client, run["id"], *FINISHED, seconds=120)
    assert final["error"]["code"] == "command_failed"
    summary = (await client.get(f"/v1/runs/{run['id']}/summary")).json()
    assert [(s["name"], s.get("exit_code")) for s in summary["steps"]] == [
        ("build", None),
        ("exit", 3),
    ]


@pytest.mark.settings(build_tool="pip", build_keep_environments=1)
async def test_old_environments_are_collected_and_a_server_directory_can_be_a_package(
    client: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    first = await make_built_pipeline(client, "first")
    one = await wait_for_build(client, (await start_build(client, first["id"]))["id"])
    assert one["status"] == "ready", one["error"]
    packages = Path(settings.data_dir).parent / "packages"
    greeter = packages / "greeter"
    for name, content in GREETER.items():
        if name.startswith("greeter/"):
            (greeter / name.removeprefix("greeter/")).parent.mkdir(parents=True, exist_ok=True)
            (greeter / name.removeprefix("greeter/")).write_bytes(content)
    settings.build_package_dirs.append(packages)
    second = await make_pipeline(client, name="second", environment={"packages": [str(greeter)]})
    two = await wait_for_build(client, (await start_build(client, second["id"]))["id"])
    assert two["status"] == "ready", two["error"]
    # only the newest is kept: the first's files are gone, and a build of it starts over
    (kept,) = await settled_dirs(settings, 1)
    assert kept.parent.name == two["environment_key"]
    assert not list(greeter.glob("*.egg-info"))  # built from a copy: the directory is untouched
    rebuilt = await start_build(client, first["id"])
    assert rebuilt["status"] == "queued" and rebuilt["reused"] is False
    assert (await wait_for_build(client, rebuilt["id"]))["status"] == "ready"


#: a package whose build hangs: setuptools runs its setup.py
SLOW = {
    "slow/setup.py": b"import time\ntime.sleep(60)\nfrom setuptools import setup\nsetup()\n",
    "slow/pyproject.toml": b'[project]\nname = "slow"\nversion = "0"\n',
}


@pytest.mark.settings(build_tool="pip")
async def test_a_cancelled_build_stops_at_once_and_leaves_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    pipeline = await make_built_pipeline(
        client, environment={"packages": ["slow"]}, bundle=zip_of(SLOW)
    )
    build = await start_build(client, pipeline["id"])
    for _ in range(300):  # until the package's build has started
        lines = [e["data"].get("text", "") for e in await events_of(client, build["links"]["self"])]
        if any("build_wheel" in line for line in lines):
            break
        await asyncio.sleep(0.1)
    cancelled = await client.post(f"/v1/builds/{build['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["result"] == "cancelled"
    assert cancelled.json()["build"]["status"] == "cancelled"
    frames = await read_until_end(client, f"/v1/builds/{build['id']}/events?stream=true")
    assert [f.event for f in frames[-2:]] == ["build.cancelled", "stream.end"]
    assert frames[-1].data["status"] == "cancelled"
    assert environment_dirs(settings) == []
    again = await client.post(f"/v1/builds/{build['id']}/cancel")
    assert again.json()["result"] == "already_finished"


@pytest.mark.settings(build_tool="pip")
async def test_builds_a_stopped_server_was_running_end_cancelled(settings: Settings) -> None:
    async def client_of(app: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

    app = create_app(settings)
    async with LifespanManager(app), await client_of(app) as client:
        pipeline = await make_built_pipeline(
            client, environment={"packages": ["slow"]}, bundle=zip_of(SLOW)
        )
        stopped = await start_build(client, pipeline["id"])
        crashed = await start_build(client, pipeline["id"])  # waits behind the first
    # the shutdown cancelled both; make the second look like one a crash left behind
    async with app.state.services.db.write() as tx:
        await build_repo.update(tx.conn, crashed["id"], {"status": "building"})
    again = create_app(settings)
    async with LifespanManager(again), await client_of(again) as client:
        first = (await client.get(f"/v1/builds/{stopped['id']}")).json()
        assert (first["status"], first["error"]["code"]) == ("cancelled", "cancelled")
        second = (await client.get(f"/v1/builds/{crashed['id']}")).json()
        assert (second["status"], second["error"]["code"]) == ("cancelled", "interrupted")
        types = [e["type"] for e in await events_of(client, f"/v1/builds/{crashed['id']}")]
        assert types[-1] == "build.cancelled"


@pytest.mark.settings(build_tool="uv", worker_enabled=True)
async def test_uv_builds_the_environment_when_it_is_there(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    await make_built_pipeline(client)
    run = await make_run(client, pipeline="greet", input={"name": "Ada"})
    final = await wait_for_status(client, run["id"], *FINISHED, seconds=120)
    assert final["status"] == "completed", final["error"]
    assert final["output"]["greet"]["greeting"] == "Hello, Ada"
    lines = [
        e["data"]["text"]
        for e in await events_of(client, f"/v1/runs/{run['id']}")
        if e["type"] == "console.line" and e["step"] == "build"
    ]
    uv = shutil.which("uv")
    assert any(line.startswith(f"$ {uv} venv --python") for line in lines), lines
    assert any(line.startswith(f"$ {uv} pip install --python") for line in lines), lines
