"""The curl walk-through in docs/events.md runs as written against a real server."""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import free_port
from tests.e2e.conftest import cli_env
from tests.llm_fake import FakeModelServer, Reply

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


def assert_documented_output(stdout: str, doc: str) -> None:
    """Every ``# `` comment line of the doc's bash blocks is a line the script printed, in
    the doc's order."""
    blocks = re.findall(r"```bash\n(.*?)```", (DOCS / doc).read_text(), flags=re.S)
    documented = [line[2:] for block in blocks for line in block.splitlines() if line[:2] == "# "]
    assert documented, "the walk-through lost its printed lines"
    printed = iter(stdout.splitlines())
    for line in documented:
        assert any(out == line for out in printed), f"not printed (in order): {line}\n{stdout}"


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


@pytest.mark.with_worker
def test_the_builds_walk_through_runs_as_documented(server: str, tmp_path: Path) -> None:
    stdout, run_id = run_doc(server, "builds.md", tmp_path)
    assert_documented_output(stdout, "builds.md")
    run = httpx.get(f"{server}/v1/runs/{run_id}").json()
    assert run["status"] == "completed", run["error"]
    assert run["output"]["hello"] == {"greeting": "Hello, Ada"}


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


#: what the evaluation walk-through's model answers: version 1 of the prompt misreads the
#: first invoice's total, version 2 (which asks for the total without currency) reads both
EXTRACTIONS = {
    ("1", "INVOICE 0042"): {"number": "0042", "total": "1,250.00 EUR", "vendor": "ACME Corp"},
    ("1", "Invoice 77"): {"number": "77", "vendor": "Globex Ltd", "total": 99.9},
    ("2", "INVOICE 0042"): {"number": "0042", "vendor": "ACME Corp", "total": 1250},
    ("2", "Invoice 77"): {"number": "77", "vendor": "Globex Ltd", "total": 99.9},
}


def _extraction(body: Any) -> Reply:
    prompt = body["messages"][-1]["content"]
    version = "2" if "without currency" in prompt else "1"
    document = "INVOICE 0042" if "INVOICE 0042" in prompt else "Invoice 77"
    return Reply(text=orjson.dumps(EXTRACTIONS[version, document]).decode())


@pytest.mark.with_worker
def test_the_evaluation_walk_through_runs_as_documented(server: str, tmp_path: Path) -> None:
    with FakeModelServer() as model:
        model.responder = _extraction
        env = {"MODEL_URL": f"{model.url}/v1", "MODEL_NAME": "fake-model"}
        stdout, _ = run_doc(server, "evaluation.md", tmp_path, env)
    lines = stdout.splitlines()
    documented = (DOCS / "evaluation.md").read_text()
    for prefix in ("extracted ", "scores ", "usage ", "runs ", "version 1 ", "version 2 "):
        [line] = [line for line in lines if line.startswith(prefix)]
        assert f"# {line}\n" in documented, line

    metrics = [line.split()[1] for line in lines if line.startswith("metric ")]
    assert metrics == ["f1", "precision", "recall", "duration_ms", "cost_usd"]
    assert "metric f1 0.6 0.85 0.25 41.67" in lines
    assert "field /lines/0/qty different 2 3" in lines
    assert 'field /vendor/vat only_in_a "DE123" null' in lines
    [summary] = [orjson.loads(line[8:]) for line in lines if line.startswith("summary ")]
    assert summary["input_keys_different"] == ["prompt_version"]
    assert (summary["fields_same"], summary["fields_only_in_b"]) == (3, 2)


def test_the_observability_walk_through_runs_as_documented(server: str, tmp_path: Path) -> None:
    stdout, _ = run_doc(server, "observability.md", tmp_path)
    lines = stdout.splitlines()
    assert [line for line in lines if line.startswith("outcome ")] == [
        "outcome completed None True Z",
        "outcome cancelled None True Z",
        "outcome failed build",
        "outcome completed None",
    ]
    assert "has_more True" in lines
    assert "slo 5 3 1 1 0" in lines and "rate 0.6 budget 0.2" in lines
    assert "durations True True" in lines
    assert "what-if 5 0.6 high {'p50': 0.012, 'p90': 0.015}" in lines
    assert any(line.startswith("estimated from 5 finished runs of deploy") for line in lines)
    [unknown] = [orjson.loads(line) for line in lines if line.startswith('{"pipeline"')]
    assert (unknown["sample_size"], unknown["risk_level"]) == (0, "unknown")
    assert unknown["message"].startswith("no history")


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


#: what the agents walk-through asks the model, in order; the long answers are cut short by
#: the walk-through (interrupted, cancelled), at 20 chunks a second they would last 10 s
LONG = Reply(text="word " * 160, chunk=4, tokens_per_second=20)
AGENT_REPLIES = [
    Reply(
        tool_calls=[("calculator", {"expression": "2400 * 17.5 / 100"})],
        input_tokens=120,
        output_tokens=20,
    ),
    Reply(text="17.5% of 2400 is 420.", input_tokens=160, output_tokens=12),
    Reply(text="17.5% of 420 is 73.5."),  # the second turn
    LONG,  # interrupted
    Reply(text="2 + 2 = 4."),  # the interrupting turn
    LONG,  # cancelled
    Reply(text="Runyard logs each run step as an event."),  # the llm step
]


@pytest.mark.with_worker
def test_the_agents_walk_through_runs_as_documented(server: str, tmp_path: Path) -> None:
    with FakeModelServer() as model:
        model.script(*AGENT_REPLIES)
        env = {"MODEL_URL": f"{model.url}/v1", "MODEL_NAME": "fake-model"}
        stdout, _ = run_doc(server, "agents.md", tmp_path, env)
        # the interrupted and the cancelled answers: the client went away long before the
        # 10 s they would have taken
        cut = [model.wait_done(index) for index in (3, 5)]
        requests = list(model.requests)
    assert [r.finished for r in cut] == [False, False]
    provider = orjson.loads((tmp_path / "provider.json").read_text())
    assert provider["api_key_set"] is True and "api_key" not in provider
    assert requests[0].headers["authorization"] == "Bearer none"  # the key went to the model

    [agent] = httpx.get(f"{server}/v1/agents").json()["data"]
    [session] = httpx.get(f"{server}/v1/agents/{agent['id']}/sessions").json()["data"]
    assert session["status"] == "idle"
    turns = httpx.get(f"{server}/v1/runs", params={"session_id": session["id"], "limit": 10})
    # newest first: the cancelled turn, the interrupting one, the enqueued and the interrupted
    # ones (both cancelled), the second turn, the first
    statuses = [(r["status"], r["pipeline"]) for r in turns.json()["data"]]
    assert statuses == [
        ("cancelled", "agent.turn"),
        ("completed", "agent.turn"),
        ("cancelled", "agent.turn"),
        ("cancelled", "agent.turn"),
        ("completed", "agent.turn"),
        ("completed", "agent.turn"),
    ]
    first = httpx.get(f"{server}/v1/runs/{turns.json()['data'][-1]['id']}").json()
    assert first["output"]["text"] == "17.5% of 2400 is 420."
    assert first["usage"] == {
        "input_tokens": 280,
        "output_tokens": 32,
        "cost_usd": pytest.approx((280 * 0.15 + 32 * 0.6) / 1e6),
    }

    path = f"{server}/v1/agents/{agent['id']}/sessions/{session['id']}/messages"
    messages = httpx.get(path, params={"limit": 200}).json()["data"]
    assert [(m["role"], m.get("name")) for m in messages[:4]] == [
        ("user", None),
        ("tool_call", "calculator"),
        ("tool_result", "calculator"),
        ("assistant", None),
    ]
    assert messages[2]["content"] == {"result": 420.0} and messages[2]["is_error"] is False
    # the refused message was not kept; the interrupted and enqueued ones were
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert "Actually, just tell me 2 + 2." not in users
    assert "Then a worked example, please." in users
    # the second turn sent the whole history, the tool's result included
    second = requests[2].body["messages"]
    assert [m["role"] for m in second] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    assert len(requests) == len(AGENT_REPLIES)

    assert "\n18 message.user And 17.5% of that?\n" in stdout
    assert "\n409\n" in stdout and '"code":"turn_in_progress"' in stdout
    assert "\ncancelling\n" in stdout
    assert '3 tool_result {"result": 420.0}' in stdout
    assert (
        '{"summary": {"text": "Runyard logs each run step as an event.", "model": "fake-model"}}'
        in stdout
    )
