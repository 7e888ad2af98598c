"""Fuzzing (issue: tenancy and trust): schemathesis generates requests from the whole OpenAPI
document and sends them, authenticated with an admin key, to a real ``runyard serve``. No
answer may be a 5xx, and every answer must match the schema its route declares.

Bounded for CI: a few derandomised examples per operation. The server runs without its
embedded worker, and its outbound HTTP (webhooks, ``http`` executors) goes through a proxy
address on loopback that refuses connections, so generated URLs never reach the network.
"""

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from runyard.app import create_app
from runyard.settings import Settings
from tests.conftest import free_port, postgres_url
from tests.e2e.conftest import cli_env, start_serve, stop

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SCHEMA = schemathesis.openapi.from_dict(create_app(Settings()).openapi())
EXAMPLES = 6


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzz_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A server with an admin key, on each database: its base URL and the key."""
    if request.param == "postgres":
        with _postgres_schema() as database:
            yield from _serve(tmp_path_factory, database)
    else:
        yield from _serve(tmp_path_factory, {})


@contextlib.contextmanager
def _postgres_schema() -> Iterator[dict[str, str]]:
    url = postgres_url()
    schema = f"fuzz_{uuid.uuid4().hex[:12]}"
    try:
        yield {"RUNYARD_DATABASE_URL": url, "RUNYARD_DATABASE_SCHEMA": schema}
    finally:
        asyncio.run(_drop(url.replace("postgresql+asyncpg://", "postgresql://"), schema))


async def _drop(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _serve(
    tmp_path_factory: pytest.TempPathFactory, database: dict[str, str]
) -> Iterator[tuple[str, str]]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    env = {
        **cli_env(),
        **database,
        "ALL_PROXY": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "HTTP_PROXY": f"http://127.0.0.1:{free_port()}",
        "HTTPS_PROXY": f"http://127.0.0.1:{free_port()}",
        "NO_PROXY": "",
    }
    create = ["keys", "create", "--data-dir", str(data), "--role", "admin", "--name", "fuzz"]
    key = subprocess.run(
        [sys.executable, "-m", "runyard", *create],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    port = free_port()
    process = start_serve(data, port, env, data.parent / "serve.log", "--no-worker")
    try:
        yield f"http://127.0.0.1:{port}", key
    finally:
        stop(process)


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_generated_request_gets_a_5xx_or_an_undeclared_shape(
    case: schemathesis.Case, fuzz_target: tuple[str, str]
) -> None:
    base, key = fuzz_target
    if isinstance(case.body, dict) and "wait_seconds" in case.body:
        case.body["wait_seconds"] = 0  # a long-poll would only wait out its seconds
    headers = {"Authorization": f"Bearer {key}"}
    if case.headers and "X-Webhook-Secret" in case.headers:
        headers = {}  # the billing webhook authenticates by its secret
    case.call_and_validate(
        base_url=base,
        headers=headers,
        checks=[not_a_server_error, response_schema_conformance],
        timeout=30,
    )
