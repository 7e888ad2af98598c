"""Making one environment on disk: the bundle unpacked, a virtualenv, requirements and local
packages installed, and a manifest of what ended up inside.

Everything goes into a directory of its own (``<environments>/<key>/<build id>``); the build
service records it as ready only after :func:`build` returns, and deletes the directory when
it raises, so no later run ever uses half an environment.
"""

import asyncio
import importlib.util
import io
import os
import shutil
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from runyard.builds.specs import EnvironmentSpec, Interpreter
from runyard.processes import run_process

#: what a build prints: ``(stream, text)``
Lines = Callable[[str, str], None]

_LIST_PACKAGES = (
    "import importlib.metadata as m, json; "
    "print(json.dumps(sorted({(d.metadata['Name'] or '?', d.version) for d in m.distributions()})))"
)


class BuildError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Recipe:
    """Everything one environment is made from, resolved."""

    key: str
    spec: EnvironmentSpec
    interpreter: Interpreter
    bundle: dict[str, Any] | None  # the pipeline's bundle row (sha256, format, storage_key)


def find_uv(setting: str) -> str | None:
    """uv's path when builds use it (``RUNYARD_BUILD_TOOL``: uv, or auto and uv is on the
    ``PATH``), else None: venv and pip."""
    uv = shutil.which("uv")
    if setting == "uv" and not uv:
        raise BuildError("uv_not_found", "RUNYARD_BUILD_TOOL is uv, but uv is not on the PATH")
    return uv if setting in ("uv", "auto") else None


PIP_OPTIONS = ("--disable-pip-version-check", "--no-input")


def _server_pip_serves(interpreter: Interpreter) -> bool:
    """Whether the server's own pip can install into an environment of ``interpreter``
    (``pip --python``; the pip of these years runs on Python 3.9 and later)."""
    version = tuple(int(part) for part in interpreter.version.split("."))
    return version >= (3, 9) and importlib.util.find_spec("pip") is not None


def venv_python(target: Path) -> Path:
    return target / "venv" / "bin" / "python"


async def build(
    recipe: Recipe,
    target: Path,
    *,
    bundle: bytes | None,
    uv: str | None,
    lines: Lines,
) -> dict[str, Any]:
    """Make the environment in ``target`` (which must not exist); its manifest."""
    target.mkdir(parents=True)  # noqa: ASYNC240 (one directory, no waiting)
    spec = recipe.spec
    if bundle is not None and recipe.bundle is not None:  # up to hundreds of MiB: not on the loop
        await asyncio.to_thread(unpack, bundle, recipe.bundle["format"], target / "bundle")
        lines("stdout", f"unpacked bundle {recipe.bundle['sha256'][:12]} into the environment")
    else:
        (target / "bundle").mkdir()
    packages = [
        await asyncio.to_thread(_package_source, package, target, n)
        for n, package in enumerate(spec.packages)
    ]
    python = str(venv_python(target))
    venv = str(target / "venv")
    interpreter = recipe.interpreter.path
    env = _build_env()
    if uv is not None:
        await _step([uv, "venv", "--python", interpreter, venv], target, env, lines)
        install = [uv, "pip", "install", "--python", python]
    elif _server_pip_serves(recipe.interpreter):
        # the server's pip installs into the environment: no pip of its own to set up there
        # (seconds saved per build)
        await _step([interpreter, "-m", "venv", "--without-pip", venv], target, env, lines)
        install = [sys.executable, "-m", "pip", "--python", python, "install", *PIP_OPTIONS]
    else:
        await _step([interpreter, "-m", "venv", venv], target, env, lines)
        install = [python, "-m", "pip", "install", *PIP_OPTIONS]
    if spec.requirements:
        await _step([*install, *spec.requirements], target, env, lines)
    if packages:
        await _install_local(packages, target, install, env, lines)
    listed: list[str] = []
    code = await run_process(
        [python, "-c", _LIST_PACKAGES],
        cwd=target,
        env=env,
        on_line=lambda stream, text: listed.append(text) if stream == "stdout" else None,
    )
    installed = orjson.loads(listed[-1]) if code == 0 and listed else []
    manifest = {
        "python": recipe.interpreter.full_version,
        "interpreter": python,
        "packages": [{"name": name, "version": version} for name, version in installed],
    }
    (target / "manifest.json").write_bytes(orjson.dumps(manifest))
    lines("stdout", f"environment {recipe.key} ready: {len(installed)} packages")
    return manifest


async def _step(argv: list[str], cwd: Path, env: dict[str, str], lines: Lines) -> None:
    lines("stdout", "$ " + " ".join(argv))
    try:
        code = await run_process(argv, cwd=cwd, env=env, on_line=lines)
    except OSError as exc:
        raise BuildError("build_command_failed", f"{argv[0]}: {exc}") from exc
    if code != 0:
        what = " ".join([Path(argv[0]).name, *argv[1:4]])
        raise BuildError("build_command_failed", f"`{what} ...` exited with code {code}")


#: builds a wheel with the server's own setuptools (its bdist_wheel needs nothing else)
_BUILD_WHEEL = "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))"
SETUPTOOLS = "setuptools.build_meta"


async def _install_local(
    packages: list[str],
    target: Path,
    install: list[str],
    env: dict[str, str],
    lines: Lines,
) -> None:
    """Local packages built with setuptools become wheels made by the server's setuptools,
    so that no build needs a download; others are installed from their directory by the
    installer, which fetches their build backend from the package index."""
    wheels = target / "wheels"
    wheels.mkdir()
    direct: list[str] = []
    for source in packages:
        if _backend(Path(source)) != SETUPTOOLS:
            direct.append(source)
            continue
        lines("stdout", f"$ (setuptools) build_wheel {source}")
        try:
            code = await run_process(
                [sys.executable, "-c", _BUILD_WHEEL, str(wheels)],
                cwd=Path(source),
                env=env,
                on_line=lines,
            )
        except OSError as exc:
            raise BuildError("build_command_failed", f"{sys.executable}: {exc}") from exc
        if code != 0:
            raise BuildError(
                "package_build_failed", f"building a wheel of {Path(source).name} failed"
            )
    built = sorted(str(wheel) for wheel in wheels.glob("*.whl"))
    if built or direct:
        await _step([*install, *built, *direct], target, env, lines)


def _backend(source: Path) -> str:
    """The build backend a package declares (setuptools when it declares none)."""
    try:
        with (source / "pyproject.toml").open("rb") as handle:
            declared = tomllib.load(handle)
    except FileNotFoundError:
        return SETUPTOOLS
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BuildError("package_invalid", f"{source.name}/pyproject.toml: {exc}") from exc
    backend = declared.get("build-system", {}).get("build-backend", SETUPTOOLS)
    return str(backend)


def _build_env() -> dict[str, str]:
    """The server's variables without those of its own virtualenv."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _package_source(package: str, target: Path, n: int) -> str:
    """Where a local package is installed from: inside the unpacked bundle, or a copy of a
    server directory (so that the build never writes into it)."""
    if package.startswith("/"):
        source = Path(package)
        if not source.is_dir():
            raise BuildError("package_not_found", f"{package} is not a directory on the server")
        copy = target / "packages" / f"{n}-{source.name}"
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", ".git"))
        return str(copy)
    path = (target / "bundle" / package).resolve()
    if not path.is_relative_to((target / "bundle").resolve()) or not path.is_dir():
        raise BuildError(
            "package_not_found",
            f"{package} is not a directory of the pipeline's bundle "
            "(POST /v1/pipelines/{id}/bundle uploads one)",
        )
    return str(path)


def unpack(data: bytes, kind: str, destination: Path) -> None:
    """Unpack a bundle already checked by :func:`runyard.pipelines.archives.inspect`; links are
    not made (a zip's become files holding their target), and nothing lands outside."""
    destination.mkdir(parents=True)
    if kind == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(destination)
        return
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz" if kind == "tar.gz" else "r:") as tar:
        tar.extractall(destination, filter="data")
