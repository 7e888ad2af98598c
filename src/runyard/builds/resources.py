"""What builds and environments look like to the API and to runs."""

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runyard.clock import isoformat, ms_between
from runyard.problems import NotFound

#: the events that end a build's stream, and the status each ends it with
TERMINAL = {"build.completed": "ready", "build.failed": "failed", "build.cancelled": "cancelled"}


def build_resource(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "build",
        "workspace_id": row["workspace_id"],
        "pipeline_id": row["pipeline_id"],
        "pipeline_version": row["pipeline_version"],
        "environment_key": row["environment_key"],
        "status": row["status"],
        "reused": row["reused"],
        "force": row["force"],
        "run_id": row["run_id"],
        "created_by": row["created_by"],
        "created_at": isoformat(row["created_at"]),
        "started_at": isoformat(row["started_at"]),
        "completed_at": isoformat(row["completed_at"]),
        "duration_ms": ms_between(row["started_at"], row["completed_at"]),
        "error": row["error"],
        "links": {"self": f"/v1/builds/{row['id']}", "events": f"/v1/builds/{row['id']}/events"},
    }


class BuildNotFound(NotFound):
    code = "build_not_found"


class BuildFailed(Exception):
    """A run's environment could not be made; ``error`` is the build's."""

    def __init__(self, error: dict[str, Any], build_id: str | None) -> None:
        super().__init__(error.get("message"))
        self.error = error
        self.build_id = build_id


@dataclass(frozen=True)
class Environment:
    """A ready environment as steps use it."""

    key: str
    path: Path
    python: str  # full version
    build_id: str
    build_duration_ms: int

    @property
    def interpreter(self) -> Path:
        return self.path / "venv" / "bin" / "python"

    @property
    def bundle_dir(self) -> Path:
        return self.path / "bundle"


@dataclass(frozen=True)
class Prepared:
    """What a run got: the environment, and the build that made it for this run (or None)."""

    environment: Environment
    reused: bool
    build: dict[str, Any] | None

    def summary(self) -> dict[str, Any]:
        env = self.environment
        return {
            "environment_key": env.key,
            "reused": self.reused,
            "build_id": self.build["id"] if self.build else env.build_id,
            "build_duration_ms": env.build_duration_ms,
            "python": env.python,
            "interpreter": str(env.interpreter),
        }


def load_node_id(data_dir: Path) -> str:
    """This data directory's id (made on first use): whose disk an environment is on."""
    path = data_dir / "node.id"
    if not path.exists():
        path.write_text(f"node_{secrets.token_hex(8)}\n")
    return path.read_text().strip()
