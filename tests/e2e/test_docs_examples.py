"""The curl walk-through in docs/events.md runs as written against a real server."""

import re
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import free_port
from tests.e2e.conftest import cli_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _script(base: str, doc: str = "events.md") -> str:
    """The doc's bash blocks in order, minus the ones that stream forever (``curl -N``),
    failing on any HTTP error (``curl -sf``)."""
    blocks = re.findall(r"```bash\n(.*?)```", (DOCS / doc).read_text(), flags=re.S)
    runnable = [block for block in blocks if "curl -N" not in block]
    assert runnable, "the walk-through lost its examples"
    script = "\n".join(runnable).replace("localhost:8000", base.removeprefix("http://"))
    return "set -euo pipefail\n" + script.replace("curl -s ", "curl -sf ")


def _write_files(doc: str, cwd: Path) -> None:
    """The doc's Python files: ``python`` blocks whose first line is ``# <name>.py``."""
    for block in re.findall(r"```python\n(.*?)```", (DOCS / doc).read_text(), flags=re.S):
        first = block.splitlines()[0]
        if re.fullmatch(r"# \w+\.py", first):
            (cwd / first.removeprefix("# ")).write_text(block)


def run_doc(
    server: str, doc: str, cwd: Path, env_extra: dict[str, str] | None = None
) -> tuple[str, str]:
    """Run a doc's walk-through; its output and the run id it left in ``$RUN``.
    ``runyard`` on the PATH is this environment's."""
    _write_files(doc, cwd)
    env = {**cli_env(), **(env_extra or {})}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-c", _script(server, doc) + '\nprintf "\\nRUN=%s\\n" "${RUN:-}"'],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, result.stdout.strip().splitlines()[-1].removeprefix("RUN=")


def test_the_events_walk_through_runs_as_documented(server: str, tmp_path: Path) -> None:
    stdout, run_id = run_doc(server, "events.md", tmp_path)
    run = httpx.get(f"{server}/v1/runs/{run_id}").json()
    assert run["status"] == "completed"
    assert run["output"] == {"url": "https://staging.example"}
    assert '"first_sequence":4,"last_sequence":5' in stdout
    assert '"result":"already_terminal"' in stdout
    logfile = [orjson.loads(line) for line in (tmp_path / "run.ndjson").read_text().splitlines()]
    assert [e["type"] for e in logfile] == [
        "run.created",
        "run.queued",
        "run.started",
        "console.line",
        "log",
        "run.progress",
        "run.completed",
    ]


def test_the_runner_walk_through_runs_as_documented(server: str, tmp_path: Path) -> None:
    stdout, run_id = run_doc(server, "runners.md", tmp_path)
    run = httpx.get(f"{server}/v1/runs/{run_id}").json()
    assert run["status"] == "completed" and run["output"] == {"width": 640}
    assert run["attempt"] == 1 and run["runner_id"].startswith("rnr_")
    assert '"cancel_requested":false' in stdout
    outputs = httpx.get(f"{server}/v1/runs/{run_id}/outputs").json()["data"]
    assert [(o["path"], o["artifact_type"]) for o in outputs] == [("reports/index.html", "report")]
    assert "<h1>report</h1>" in stdout
    assert "Hello, Ada!" in stdout  # the SDK section: `runyard worker` ran greet.py's handler
    greet = httpx.get(f"{server}/v1/runs", params={"pipeline": "greet"}).json()["data"]
    assert [(r["status"], r["progress"]) for r in greet] == [("completed", 1.0)]
    runners = httpx.get(f"{server}/v1/runners").json()["data"]
    assert sorted(r["name"] for r in runners)[-1] == "worker-1"
    assert len(runners) == 2


@pytest.mark.with_worker
def test_the_pipeline_walk_through_runs_as_documented(server: str, tmp_path: Path) -> None:
    stdout, run_id = run_doc(server, "pipelines.md", tmp_path)
    run = httpx.get(f"{server}/v1/runs/{run_id}").json()
    assert run["status"] == "completed", run["error"]
    assert [(s["name"], s["status"]) for s in run["steps"]] == [
        ("test", "completed"),
        ("notes", "skipped"),
        ("tag", "completed"),
    ]
    assert "[stdout] test testing 2.1.0" in stdout
    assert "[stdout] tag tagged" in stdout


def test_the_auth_walk_through_runs_as_documented(server: str, tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")  # the server fixture's
    stdout, _ = run_doc(server, "auth.md", tmp_path, {"RUNYARD_DATA_DIR": data_dir})
    admin = stdout.splitlines()[0]
    assert admin.startswith("ryk_")
    keys = httpx.get(f"{server}/v1/api-keys", headers={"Authorization": f"Bearer {admin}"})
    assert [(k["name"], k["revoked_at"] is not None) for k in keys.json()["data"]] == [
        ("ci", True),
        ("bootstrap", False),
    ]
    assert "\n401\n" in stdout  # the last request, without a key
    # the session walk-through: the cookie reads; a POST needs the CSRF token; logout ends it
    assert '"object":"session"' in stdout and '"role":"admin"' in stdout
    assert "\n403\n" in stdout and '"name":"from-browser"' in stdout
    assert [line for line in stdout.splitlines() if line][-2] == "401"  # after logout


def test_the_idempotency_walk_through_runs_as_documented(server: str, tmp_path: Path) -> None:
    stdout, _ = run_doc(server, "idempotency.md", tmp_path)
    created = [orjson.loads(line) for line in stdout.splitlines() if '"object":"run"' in line]
    assert len(created) == 2 and created[0] == created[1]
    runs = httpx.get(f"{server}/v1/runs", params={"pipeline": "nightly"}).json()["data"]
    assert [r["id"] for r in runs] == [created[0]["id"]]


def test_the_workspaces_walk_through_runs_as_documented(server: str, tmp_path: Path) -> None:
    stdout, _ = run_doc(server, "workspaces.md", tmp_path)
    answers = [orjson.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    created, got, before, changed, after = answers
    assert created["admin_key"] is None
    assert got == {k: v for k, v in created.items() if k != "admin_key"}
    assert (before["tier"], before["limit"], before["runs"]) == ("free", 10, 0)
    assert changed["tier"] == "pro"
    assert (after["workspace_id"], after["tier"], after["limit"]) == (created["id"], "pro", 1000)


@pytest.mark.server_env(RUNYARD_WEBHOOK_ALLOW_PRIVATE="true")
def test_the_webhooks_walk_through_runs_as_documented(server: str, tmp_path: Path) -> None:
    _, run_id = run_doc(server, "webhooks.md", tmp_path, {"RECEIVER_PORT": str(free_port())})
    assert httpx.get(f"{server}/v1/runs/{run_id}").json()["status"] == "completed"
    # every line is a delivery the receiver verified with the webhook's secret
    received = [line.split() for line in (tmp_path / "received.txt").read_text().splitlines()]
    new = sorted(event for _, kind, event, _ in received if kind == "new")
    assert new == ["deploy.started", "run.completed", "run.created", "run.queued", "run.started"]
    [repeat] = [line for line in received if line[1] == "repeat"]  # the redelivery
    assert [line[0] for line in received].count(repeat[0]) == 2  # with the same webhook-id
