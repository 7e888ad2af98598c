"""A pipeline environment built offline: a local package in a bundle, and the steps that use it."""

from typing import Any

import httpx

from tests.bundle_support import zip_of
from tests.support import make_pipeline

#: a package with a setuptools build (the environment's own setuptools: no download)
GREETER = {
    "greeter/pyproject.toml": b"""[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "greeter"
version = "1.2.0"
""",
    "greeter/src/greeter/__init__.py": b"""import os
import pathlib
import sys


def hello(ctx, input):
    ctx.log("greeting " + input["name"])
    ctx.metric("letters", len(input["name"]))
    out = pathlib.Path(os.environ["RUNYARD_OUTPUT_DIR"])
    (out / "greeting.txt").write_text("Hello, " + input["name"] + "!\\n")
    print("written greeting.txt")
    return {"greeting": "Hello, " + input["name"], "python": sys.executable,
            "cwd": os.getcwd()}


def fail(ctx, input):
    raise RuntimeError("no greeting today")
""",
    "scripts/report.py": b"""import greeter, os, sys
print("report from", sys.prefix)
print("FLAVOUR", os.environ.get("FLAVOUR"))
""",
}


#: made once: a zip records when its entries were written, and equal bundles share an
#: environment only when their bytes are equal
GREETER_BUNDLE = zip_of(GREETER)


def greeter_steps() -> list[dict[str, Any]]:
    return [
        {"name": "greet", "uses": "python", "with": {"function": "greeter:hello"}},
        {
            "name": "report",
            "uses": "command",
            "with": {"run": 'python "$RUNYARD_BUNDLE_DIR/scripts/report.py"'},
        },
    ]


async def make_built_pipeline(
    client: httpx.AsyncClient,
    name: str = "greet",
    *,
    environment: dict[str, Any] | None = None,
    bundle: bytes | None = None,
    steps: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A pipeline with an environment and its bundle uploaded."""
    pipeline = await make_pipeline(
        client,
        name=name,
        environment=environment or {"packages": ["greeter"], "env": {"FLAVOUR": "mint"}},
        steps=steps or greeter_steps(),
    )
    response = await client.post(
        f"/v1/pipelines/{pipeline['id']}/bundle",
        content=bundle or GREETER_BUNDLE,
        headers={"Content-Type": "application/zip"},
    )
    assert response.status_code == 201, response.text
    return pipeline
