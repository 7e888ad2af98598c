"""What a pipeline's ``environment`` may say (checked when it is saved), and its key."""

import sys
from typing import Any

import httpx
import pytest

from runyard.builds.specs import EnvironmentSpec, environment_key
from tests.support import assert_problem, make_pipeline

pytestmark = pytest.mark.anyio
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.mark.parametrize(
    ("environment", "steps", "where"),
    [
        ({"python": "3.99"}, [], ["body", "environment", "python"]),
        (
            {"requirements": ["--index-url=http://elsewhere"]},
            [],
            ["body", "environment", "requirements", 0],
        ),
        ({"requirements": ["-r /etc/passwd"]}, [], ["body", "environment", "requirements", 0]),
        ({"packages": ["../outside"]}, [], ["body", "environment", "packages", 0]),
        ({"packages": ["/etc"]}, [], ["body", "environment", "packages", 0]),
        ({"env": {"RUNYARD_RUN_ID": "x"}}, [], ["body", "environment", "env", "RUNYARD_RUN_ID"]),
        ({"env": {"not a name": "x"}}, [], ["body", "environment", "env", "not a name"]),
        ({}, [{"name": "build", "uses": "command", "with": {"run": "true"}}], ["body", "steps"]),
    ],
)
async def test_an_environment_that_could_never_build_is_refused(
    client: httpx.AsyncClient, environment: dict[str, Any], steps: list[Any], where: list[Any]
) -> None:
    response = await client.post(
        "/v1/pipelines", json={"name": "p", "environment": environment, "steps": steps}
    )
    problem = assert_problem(response, 400, "invalid_input")
    assert [error["loc"] for error in problem["errors"]] == [where]


async def test_an_unknown_field_or_python_is_refused_and_a_patch_is_checked_too(
    client: httpx.AsyncClient,
) -> None:
    unknown = await client.post("/v1/pipelines", json={"name": "p", "environment": {"pip": []}})
    assert_problem(unknown, 400, "invalid_input")
    pipeline = await make_pipeline(client, environment={"python": HERE})
    assert pipeline["environment"]["python"] == HERE
    patched = await client.patch(
        f"/v1/pipelines/{pipeline['id']}",
        json={"steps": [{"name": "build", "uses": "command", "with": {"run": "true"}}]},
    )
    assert_problem(patched, 400, "invalid_input")


async def test_a_pipeline_without_an_environment_has_nothing_to_build(
    client: httpx.AsyncClient,
) -> None:
    pipeline = await make_pipeline(client)
    response = await client.post(f"/v1/pipelines/{pipeline['id']}/builds", json={})
    assert_problem(response, 409, "no_environment")
    assert_problem(await client.post("/v1/pipelines/nope/builds"), 404, "pipeline_not_found")
    assert_problem(await client.get("/v1/builds/bld_nope"), 404, "build_not_found")
    assert_problem(await client.get("/v1/builds/bld_nope/events"), 404, "build_not_found")


def test_the_key_changes_with_every_part_of_the_environment_and_only_then() -> None:
    base = EnvironmentSpec(requirements=["a==1"], packages=["pkg"], env={"A": "1"})

    def key(spec: EnvironmentSpec = base, **parts: Any) -> str:
        made = {"full_version": "3.11.7", "bundle_sha256": "ab" * 32, "dirs": {}, **parts}
        return environment_key(spec, **made)

    assert key() == key(EnvironmentSpec(requirements=["a==1"], packages=["pkg"], env={"A": "1"}))
    assert key().startswith("env_") and len(key()) == 36
    variants = [
        key(EnvironmentSpec(requirements=["a==2"], packages=["pkg"], env={"A": "1"})),
        key(EnvironmentSpec(requirements=["a==1"], packages=["other"], env={"A": "1"})),
        key(EnvironmentSpec(requirements=["a==1"], packages=["pkg"], env={"A": "2"})),
        key(full_version="3.11.8"),
        key(bundle_sha256="cd" * 32),
        key(bundle_sha256=None),
        key(dirs={"/srv/pkg": "x"}),
    ]
    assert len({key(), *variants}) == len(variants) + 1
