"""Print ``docs/configuration.md`` from the settings model (``make docs``)."""

import json
from typing import Any

from pydantic import BaseModel

from runyard.settings import Settings

HEADER = """# Configuration

Every setting is an environment variable with the prefix `RUNYARD_`. `runyard serve` flags
(`--host`, `--port`, `--data-dir`, `--no-worker`, `--insecure`) override the variables.
This file is generated from `runyard.settings.Settings` by `make docs`; a test keeps it in step.

| variable | default | description |
|---|---|---|
"""


def _default(value: Any) -> str:
    if value is None:
        return "(none)"
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


def render() -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, dict):
            default = {
                k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in default.items()
            }
        shown = _default(str(default) if hasattr(default, "__fspath__") else default)
        rows.append(f"| `RUNYARD_{name.upper()}` | {shown} | {field.description} |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(render(), end="")
