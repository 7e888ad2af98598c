"""Environment specs (DESIGN §7): what a pipeline's steps need, checked when the pipeline is
saved, and the environment key its hash gives.

``{"python": "3.11", "requirements": [...], "packages": [...], "env": {...}}``:

- ``python``: a ``3.N`` version of an interpreter present on the server (:func:`interpreters`);
  absent means the version running the server.
- ``requirements``: anything pip takes as a requirement (PEP 508, ``name @ file:///...``);
  never an option (no leading ``-``).
- ``packages``: local packages to install: a path relative to the pipeline's bundle root, or
  an absolute path inside a directory the server allows (``RUNYARD_BUILD_PACKAGE_DIRS``).
- ``env``: variables every ``command`` and ``python`` step of the pipeline gets.

The key hashes what the environment is made of: the interpreter's full version, the
requirements, the packages (and for server directories, their files' names, sizes and
modification times), the variables, and the bundle's SHA-256. Two pipelines with the same
spec and the same bundle share one environment.
"""

import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from runyard.problems import InvalidInput

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: the step named ``build`` of a pipeline with an environment is the build (DESIGN §7)
BUILD_STEP = "build"
KEY_FORMAT = 1
_IGNORED = ("__pycache__", ".git")


class EnvironmentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    python: str | None = Field(
        None, pattern=r"^3\.\d{1,2}$", description="`3.N`; default: the server's version."
    )
    requirements: list[str] = Field(
        default_factory=list,
        max_length=500,
        description="Requirements as pip takes them (PEP 508, `name @ file:///...`).",
    )
    packages: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Local packages: paths relative to the bundle root, or absolute paths in "
        "a directory of RUNYARD_BUILD_PACKAGE_DIRS.",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Variables of every command and python step."
    )


@dataclass(frozen=True)
class Interpreter:
    version: str  # "3.11"
    full_version: str  # "3.11.7"
    path: str


_PROBE = (
    "import sys, venv, ensurepip; print('%d.%d.%d' % sys.version_info[:3]); print(sys.executable)"
)
_found: dict[tuple[str, ...], dict[str, Interpreter]] = {}
_finding = threading.Lock()


async def interpreters(configured: list[str]) -> dict[str, Interpreter]:
    """The interpreters environments may use, by ``3.N`` version: ``configured`` (paths or
    command names), else the server's own and every ``python3.N`` on the ``PATH``. Each is
    asked for its version (and whether it has ``venv``), once per process: in a thread that
    finishes and remembers the answer even when the caller stops waiting."""
    candidates = tuple(configured) or (
        sys.executable,
        *(found for n in range(6, 21) if (found := shutil.which(f"python3.{n}"))),
    )
    if candidates in _found:
        return _found[candidates]
    return await asyncio.to_thread(_find, candidates)


def _find(candidates: tuple[str, ...]) -> dict[str, Interpreter]:
    with _finding:
        if candidates not in _found:
            with ThreadPoolExecutor(len(candidates)) as pool:
                probed = list(pool.map(_probe, candidates))
            by_version: dict[str, Interpreter] = {}
            for interpreter in probed:
                if interpreter is not None:
                    by_version.setdefault(interpreter.version, interpreter)
            _found[candidates] = by_version
        return _found[candidates]


def _probe(command: str) -> Interpreter | None:
    try:
        done = subprocess.run(
            [command, "-c", _PROBE],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.decode(errors="replace").split()
    if done.returncode != 0 or len(lines) != 2:
        return None
    full, path = lines
    return Interpreter(version=".".join(full.split(".")[:2]), full_version=full, path=path)


def server_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


async def check_environment(
    environment: dict[str, Any] | None,
    steps: list[dict[str, Any]],
    *,
    pythons: list[str],
    package_dirs: list[Path],
) -> None:
    """400 for a spec that could never build: an interpreter that is not here, a requirement
    that is an option, a package path that leaves its root, a bad variable name, or a step
    that takes the name of the build."""
    if environment is None:
        return
    spec = EnvironmentSpec.model_validate(environment)
    errors: list[dict[str, Any]] = []
    loc = ["body", "environment"]
    if spec.python is not None:
        found = await interpreters(pythons)
        if spec.python not in found:
            present = ", ".join(sorted(found, key=_version_order)) or "none"
            errors.append(
                {
                    "loc": [*loc, "python"],
                    "msg": f"no Python {spec.python} on this server (present: {present})",
                }
            )
    for n, requirement in enumerate(spec.requirements):
        if not requirement.strip() or requirement.lstrip().startswith("-") or _control(requirement):
            errors.append(
                {
                    "loc": [*loc, "requirements", n],
                    "msg": "a requirement as pip takes it, not an option or an empty line",
                }
            )
    for n, package in enumerate(spec.packages):
        problem = package_problem(package, package_dirs)
        if problem:
            errors.append({"loc": [*loc, "packages", n], "msg": problem})
    for name in spec.env:
        if not ENV_NAME.match(name) or name.startswith("RUNYARD_"):
            errors.append(
                {
                    "loc": [*loc, "env", name],
                    "msg": "a variable name ([A-Za-z_][A-Za-z0-9_]*), not starting RUNYARD_",
                }
            )
    if any(step.get("name") == BUILD_STEP for step in steps):
        errors.append(
            {
                "loc": ["body", "steps"],
                "msg": f"in a pipeline with an environment, the step named {BUILD_STEP!r} is "
                "the build: give yours another name",
            }
        )
    if errors:
        raise InvalidInput("the environment cannot be built as given", errors=errors)


def package_problem(package: str, package_dirs: list[Path]) -> str | None:
    """Why ``package`` is not a path an environment may install from, or None."""
    if not package or "\\" in package or _control(package):
        return "a path: relative to the bundle root, or absolute in an allowed directory"
    if package.startswith("/"):
        path = Path(os.path.normpath(package))
        allowed = [Path(os.path.normpath(d)) for d in package_dirs]
        if not any(path != root and path.is_relative_to(root) for root in allowed):
            return (
                f"{package} is not inside a directory of RUNYARD_BUILD_PACKAGE_DIRS "
                f"({', '.join(map(str, allowed)) or 'none set'})"
            )
        return None
    if ".." in PurePosixPath(package).parts:
        return f"{package} steps out of the bundle with '..'"
    return None


def _control(text: str) -> bool:
    return any(ord(c) < 32 for c in text)


def _version_order(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def environment_key(
    spec: EnvironmentSpec, *, full_version: str, bundle_sha256: str | None, dirs: dict[str, str]
) -> str:
    """``env_`` and 32 hex digits of the SHA-256 of what makes the environment."""
    made_of = {
        "format": KEY_FORMAT,
        "python": full_version,
        "requirements": spec.requirements,
        "packages": spec.packages,
        "env": spec.env,
        "bundle": bundle_sha256,
        "dirs": dirs,
    }
    digest = hashlib.sha256(orjson.dumps(made_of, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"env_{digest[:32]}"


def directory_fingerprint(path: str) -> str:
    """What changes when a server package directory's files change: their relative paths,
    sizes and modification times (``missing`` when it is not there)."""
    root = Path(path)
    if not root.is_dir():
        return "missing"
    digest = hashlib.sha256()
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED and not d.endswith(".egg-info"))
        for name in sorted(files):
            file = Path(current, name)
            try:
                stat = file.stat()
            except OSError:
                continue
            digest.update(
                f"{file.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()
