"""Builds of pipeline environments (DESIGN §7): created, executed one spec at a time, reused,
streamed, and collected when old.

A build is a row and an event stream of the same id (``build.created``, ``build.started``,
``console.line`` with ``scope: build``, then ``build.completed`` / ``build.failed`` /
``build.cancelled``). Environments live in the server's data directory, so builds and
environments carry the data directory's node id: each server builds its own.

- Identical specs share one environment: a build finds it ready and completes at once with
  ``reused: true``; ``force`` builds a fresh one that replaces it.
- Builds of one key never run at the same time in one server: the second waits for the first
  (and then usually reuses its environment), or is refused with 409 ``build_in_progress``
  when the caller asked not to wait.
- A build writes into a directory of its own; the environment is recorded ready only once the
  build succeeded. A failed or cancelled build's directory is deleted.
"""

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from runyard.audit.service import AuditService
from runyard.blobs import BlobStore
from runyard.builds import repo
from runyard.builds.builder import BuildError, Recipe, build, find_uv
from runyard.builds.disk import EnvironmentDisk
from runyard.builds.resources import (
    TERMINAL,
    BuildFailed,
    BuildNotFound,
    Environment,
    Prepared,
    build_resource,
    load_node_id,
)
from runyard.builds.specs import (
    EnvironmentSpec,
    directory_fingerprint,
    environment_key,
    interpreters,
    server_version,
)
from runyard.clock import ms_between, utcnow
from runyard.context import Caller
from runyard.db.engine import Conn, Database, Tx
from runyard.events.service import EventService, NewEvent
from runyard.http.pagination import decode_cursor, page_of
from runyard.ids import new_id
from runyard.pipelines.service import PipelineService
from runyard.problems import Conflict, DomainError
from runyard.settings import Settings
from runyard.worker.buffer import EventBuffer

log = logging.getLogger(__name__)

FOLLOW_POLL_SECONDS = 0.2


class BuildService:
    def __init__(
        self,
        db: Database,
        events: EventService,
        blobs: BlobStore,
        pipelines: PipelineService,
        audit: AuditService,
        settings: Settings,
    ) -> None:
        self.db = db
        self.events = events
        self.blobs = blobs
        self.pipelines = pipelines
        self.audit = audit
        self.settings = settings
        self.node_id = load_node_id(settings.data_dir)
        self.root = settings.data_dir / "environments"
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._holders: dict[str, str] = {}  # key -> the build holding its lock
        self.disk = EnvironmentDisk(self.root)
        self._warming: asyncio.Task[Any] | None = None

    # --- the API ---

    async def start(self, caller: Caller, ref: str, *, force: bool, wait: bool) -> dict[str, Any]:
        """A new build of the pipeline's environment (ready at once when it exists)."""
        await interpreters(self.settings.build_pythons)  # found before the write, not in it
        async with self.db.write() as tx:
            pipeline = await self.pipelines.lock(tx, caller, ref)
            environment = pipeline["spec"].get("environment")
            if environment is None:
                raise Conflict(
                    f"pipeline {pipeline['name']} has no environment to build "
                    "(PATCH it with `environment`)",
                    code="no_environment",
                )
            recipe = await self.recipe(tx.conn, pipeline["id"], environment)
            row = await self._create(
                tx,
                caller,
                pipeline_id=pipeline["id"],
                pipeline_version=pipeline["version"],
                recipe=recipe,
                force=force,
                wait=wait,
                run_id=None,
            )
        self._launch(row, recipe)
        return build_resource(row)

    async def get(self, caller: Caller, build_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await repo.get(conn, caller.workspace_id, build_id)
        if row is None:
            raise BuildNotFound(f"build {build_id} not found")
        return build_resource(row)

    async def list_page(
        self, caller: Caller, ref: str, *, limit: int, cursor: str | None
    ) -> dict[str, Any]:
        pipeline = await self.pipelines.get(caller, ref)
        after = decode_cursor(cursor)
        async with self.db.read() as conn:
            rows = await repo.page(
                conn, caller.workspace_id, pipeline["id"], limit=limit + 1, after=after
            )
        rows, next_cursor, has_more = page_of(rows, limit)
        return {
            "data": [build_resource(r) for r in rows],
            "next_cursor": next_cursor,
            "has_more": has_more,
        }

    async def cancel(self, caller: Caller, build_id: str) -> dict[str, Any]:
        """Stop a queued or building build of this server; a finished one stays as it is."""
        build = await self.get(caller, build_id)
        task = self.tasks.get(build_id)
        if task is None and build["status"] in repo.ACTIVE:
            raise Conflict(
                f"build {build_id} is {build['status']} on another server; cancel it there",
                code="build_elsewhere",
            )
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return {
            "result": "cancelled" if task is not None else "already_finished",
            "build": await self.get(caller, build["id"]),
        }

    # --- runs ---

    async def for_run(
        self, run: dict[str, Any], environment: dict[str, Any], emit: Callable[[NewEvent], None]
    ) -> Prepared:
        """The run's environment, built first when it is missing; meanwhile the run says it
        waits (``run.waiting_for_build``) and gets the build's lines. ``BuildFailed`` when no
        environment can be had."""
        try:
            async with self.db.read() as conn:
                recipe = await self.recipe(conn, run["pipeline_id"], environment)
                ready = await self._ready(conn, recipe.key)
            if ready is not None:
                await self._touch(recipe.key)
                return Prepared(ready, reused=True, build=None)
            caller = Caller(workspace_id=run["workspace_id"], actor="runyard:worker")
            async with self.db.write() as tx:
                row = await self._create(
                    tx,
                    caller,
                    pipeline_id=run["pipeline_id"],
                    pipeline_version=run["pipeline_version"],
                    recipe=recipe,
                    force=False,
                    wait=True,
                    run_id=run["id"],
                )
        except DomainError as exc:
            raise BuildFailed({"code": exc.code, "message": exc.detail}, None) from exc
        self._launch(row, recipe)
        emit(
            NewEvent(
                "run.waiting_for_build",
                {"build_id": row["id"], "environment_key": recipe.key},
                step="build",
            )
        )
        row = await self._follow(row, emit)
        if row["status"] == "ready":
            async with self.db.read() as conn:
                ready = await self._ready(conn, recipe.key)
            if ready is not None:
                return Prepared(ready, reused=row["reused"], build=row)
            row["error"] = {"code": "environment_missing", "message": "collected meanwhile"}
        error = row["error"] or {"code": row["status"], "message": f"the build {row['status']}"}
        raise BuildFailed(error, row["id"])

    async def _follow(
        self, row: dict[str, Any], emit: Callable[[NewEvent], None]
    ) -> dict[str, Any]:
        """Copy the build's console lines into the run until the build ends; its last row."""
        after = 0
        while True:  # bounded by the run's timeout around the caller
            batch, has_more = await self.events.page(row["id"], after=after, limit=500)
            for env in batch:
                after = env["sequence"]
                if env["type"] == "console.line":
                    emit(NewEvent("console.line", env["data"], step="build"))
                elif env["type"] in TERMINAL:
                    async with self.db.read() as conn:
                        final = await repo.get(conn, row["workspace_id"], row["id"])
                    return final or row
            if not has_more:
                await asyncio.sleep(FOLLOW_POLL_SECONDS)

    def using(self, environment: Environment) -> contextlib.AbstractContextManager[None]:
        """Mark the environment in use (garbage collection leaves it alone meanwhile)."""
        return self.disk.using(environment.path)

    async def environment_record(self, key: str) -> dict[str, Any] | None:
        """The stored record of a ready environment (its packages): for diagnostics."""
        async with self.db.read() as conn:
            return await repo.environment(conn, self.node_id, key)

    # --- what makes an environment ---

    async def recipe(self, conn: Conn, pipeline_id: str, environment: dict[str, Any]) -> Recipe:
        spec = EnvironmentSpec.model_validate(environment)
        found = await interpreters(self.settings.build_pythons)
        version = spec.python or server_version()
        interpreter = found.get(version)
        if interpreter is None:
            raise Conflict(
                f"no Python {version} on this server (present: {', '.join(sorted(found))})",
                code="python_unavailable",
            )
        bundle = await repo.bundle_of(conn, pipeline_id)
        absolute = [p for p in spec.packages if p.startswith("/")]
        dirs = {}
        if absolute:
            fingerprints = await asyncio.to_thread(
                lambda: [directory_fingerprint(p) for p in absolute]
            )
            dirs = dict(zip(absolute, fingerprints, strict=True))
        key = environment_key(
            spec,
            full_version=interpreter.full_version,
            bundle_sha256=bundle["sha256"] if bundle else None,
            dirs=dirs,
        )
        return Recipe(key=key, spec=spec, interpreter=interpreter, bundle=bundle)

    async def _ready(self, conn: Conn, key: str) -> Environment | None:
        row = await repo.environment(conn, self.node_id, key)
        if row is None or not (Path(row["path"]) / "manifest.json").is_file():
            return None  # never built here, or its files are gone: build again
        return Environment(
            key=key,
            path=Path(row["path"]),
            python=row["python"],
            build_id=row["build_id"],
            build_duration_ms=row["build_duration_ms"],
        )

    async def _touch(self, key: str) -> None:
        async with self.db.write() as tx:
            await repo.touch(tx.conn, self.node_id, key, utcnow())

    # --- executing builds ---

    async def _create(
        self,
        tx: Tx,
        caller: Caller,
        *,
        pipeline_id: str,
        pipeline_version: int,
        recipe: Recipe,
        force: bool,
        wait: bool,
        run_id: str | None,
    ) -> dict[str, Any]:
        if not wait and (busy := await repo.active(tx.conn, self.node_id, recipe.key)):
            raise Conflict(
                f"build {busy['id']} of the same environment is in progress",
                code="build_in_progress",
                build_id=busy["id"],
            )
        ready = None if force else await self._ready(tx.conn, recipe.key)
        now = utcnow()
        row: dict[str, Any] = {
            "id": new_id("bld"),
            "workspace_id": caller.workspace_id,
            "pipeline_id": pipeline_id,
            "pipeline_version": pipeline_version,
            "environment_key": recipe.key,
            "node_id": self.node_id,
            "status": "ready" if ready else "queued",
            "reused": ready is not None,
            "force": force,
            "run_id": run_id,
            "created_by": caller.actor,
            "error": None,
            "created_at": now,
            "started_at": now if ready else None,
            "completed_at": now if ready else None,
        }
        await repo.insert(tx.conn, row)
        await self.events.create_stream(
            tx, stream_id=row["id"], workspace_id=caller.workspace_id, kind="build"
        )
        items = [
            NewEvent(
                "build.created",
                {
                    "pipeline_id": pipeline_id,
                    "pipeline_version": pipeline_version,
                    "environment_key": recipe.key,
                    "force": force,
                    "run_id": run_id,
                },
            )
        ]
        if ready is not None:
            await repo.touch(tx.conn, self.node_id, recipe.key, now)
            items.append(NewEvent("build.completed", self._completed(row, ready)))
        await self._append(tx, row, items)
        await self.audit.record(
            tx,
            caller,
            "pipeline.build",
            "pipeline",
            pipeline_id,
            {"build_id": row["id"], "environment_key": recipe.key, "force": force},
        )
        return row

    def _completed(self, row: dict[str, Any], environment: Environment) -> dict[str, Any]:
        return {
            "environment_key": environment.key,
            "reused": row["reused"],
            "duration_ms": ms_between(row["started_at"], row["completed_at"]),
            "environment_build_id": environment.build_id,
            "python": environment.python,
        }

    async def _append(self, tx: Tx, row: dict[str, Any], items: list[NewEvent]) -> None:
        await self.events.append(
            tx,
            row["id"],
            items,
            run_id=None,
            source="server",
            attempt=None,
            workspace_id=row["workspace_id"],
        )

    def _launch(self, row: dict[str, Any], recipe: Recipe) -> None:
        if row["status"] != "queued":
            return
        task = asyncio.create_task(self._execute(row, recipe))
        self.tasks[row["id"]] = task
        task.add_done_callback(lambda _: self.tasks.pop(row["id"], None))

    async def _execute(self, row: dict[str, Any], recipe: Recipe) -> None:
        async def write(batch: list[NewEvent]) -> None:
            async with self.db.write() as tx:
                await self._append(tx, row, batch)

        buffer = EventBuffer(write)

        def lines(stream: str, text: str) -> None:
            buffer.put(NewEvent("console.line", {"stream": stream, "text": text, "scope": "build"}))

        key = recipe.key
        lock = self._locks[key]
        try:
            if lock.locked():
                lines("stdout", f"waiting for build {self._holders.get(key)} of this environment")
            async with lock:
                self._holders[key] = row["id"]
                try:
                    await self._execute_locked(row, recipe, buffer, lines)
                finally:
                    self._holders.pop(key, None)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await buffer.close()
            if row["status"] in repo.ACTIVE:
                error = {"code": "cancelled", "message": "the build was cancelled"}
                await self._finish(row, "cancelled", error=error)
            raise
        except Exception as exc:  # the database, the disk: the build fails, not the server
            log.exception("build %s failed unexpectedly", row["id"])
            with contextlib.suppress(Exception):
                await buffer.close()
            if row["status"] in repo.ACTIVE:
                error = {"code": "build_error", "message": f"{type(exc).__name__}: {exc}"}
                with contextlib.suppress(Exception):
                    await self._finish(row, "failed", error=error)

    async def _execute_locked(
        self,
        row: dict[str, Any],
        recipe: Recipe,
        buffer: EventBuffer,
        lines: Callable[[str, str], None],
    ) -> None:
        if not row["force"]:
            async with self.db.read() as conn:
                ready = await self._ready(conn, recipe.key)
            if ready is not None:  # a build that ran meanwhile made it
                lines("stdout", f"environment {recipe.key} is ready (build {ready.build_id})")
                await buffer.close()
                await self._finish(row, "ready", reused=True, environment=ready)
                return
        started = utcnow()
        async with self.db.write() as tx:
            row.update(status="building", started_at=started)
            await repo.update(tx.conn, row["id"], {"status": "building", "started_at": started})
            await self._append(
                tx,
                row,
                [
                    NewEvent(
                        "build.started",
                        {"environment_key": recipe.key, "python": recipe.interpreter.full_version},
                    )
                ],
            )
        target = self.root / recipe.key / row["id"]
        try:
            async with asyncio.timeout(self.settings.build_timeout_seconds):
                bundle = await self._bundle_bytes(recipe)
                uv = find_uv(self.settings.build_tool)
                manifest = await build(recipe, target, bundle=bundle, uv=uv, lines=lines)
        except (BuildError, TimeoutError, OSError) as exc:
            await self.disk.remove([str(target)])
            if isinstance(exc, BuildError):
                error = {"code": exc.code, "message": exc.message}
            elif isinstance(exc, TimeoutError):
                error = {
                    "code": "build_timeout",
                    "message": f"the build exceeded {self.settings.build_timeout_seconds} s",
                }
            else:
                error = {"code": "build_error", "message": f"{type(exc).__name__}: {exc}"}
            lines("stderr", f"build failed: {error['message']}")
            await buffer.close()
            await self._finish(row, "failed", error=error)
            return
        except asyncio.CancelledError:
            await self.disk.remove([str(target)])
            raise
        completed = utcnow()
        environment = Environment(
            key=recipe.key,
            path=target,
            python=manifest["python"],
            build_id=row["id"],
            build_duration_ms=ms_between(started, completed) or 0,
        )
        await buffer.close()
        replaced = await self._finish(
            row, "ready", reused=False, environment=environment, manifest=manifest, at=completed
        )
        if replaced is not None:
            await self.disk.remove([replaced])
        await self.collect_garbage()

    async def _bundle_bytes(self, recipe: Recipe) -> bytes | None:
        if recipe.bundle is None:
            return None
        chunks = [chunk async for chunk in self.blobs.read(recipe.bundle["storage_key"])]
        return b"".join(chunks)

    async def _finish(
        self,
        row: dict[str, Any],
        status: str,
        *,
        reused: bool = False,
        error: dict[str, Any] | None = None,
        environment: Environment | None = None,
        manifest: dict[str, Any] | None = None,
        at: Any = None,
    ) -> str | None:
        """End the build; with a new environment's ``manifest``, record it ready. The path of
        the environment it replaced, if any."""
        now = at or utcnow()
        values = {
            "status": status,
            "reused": reused,
            "error": error,
            "started_at": row["started_at"] or now,
            "completed_at": now,
        }
        row.update(values)
        replaced = None
        async with self.db.write() as tx:
            await repo.update(tx.conn, row["id"], values)
            if environment is not None and manifest is not None:
                old = await repo.environment(tx.conn, self.node_id, environment.key)
                replaced = old["path"] if old is not None else None
                await repo.put_environment(
                    tx.conn,
                    {
                        "node_id": self.node_id,
                        "key": environment.key,
                        "path": str(environment.path),
                        "build_id": row["id"],
                        "python": manifest["python"],
                        "interpreter": manifest["interpreter"],
                        "packages": manifest["packages"],
                        "build_duration_ms": environment.build_duration_ms,
                        "created_at": now,
                        "last_used_at": now,
                    },
                )
            if status == "ready":
                assert environment is not None
                event = NewEvent("build.completed", self._completed(row, environment))
            else:
                kind = "build.failed" if status == "failed" else "build.cancelled"
                event = NewEvent(kind, {"environment_key": row["environment_key"], "error": error})
            await self._append(tx, row, [event])
        return replaced

    # --- keeping the disk in order ---

    async def collect_garbage(self) -> list[str]:
        """Delete environments beyond the newest ``RUNYARD_BUILD_KEEP_ENVIRONMENTS`` (by last
        use) or unused for ``RUNYARD_BUILD_MAX_AGE_DAYS``, and directories no record names
        (left by a crash); never one in use or being built. The keys deleted."""
        oldest = utcnow() - timedelta(days=self.settings.build_max_age_days)
        async with self.db.read() as conn:
            rows = await repo.environments_of(conn, self.node_id)
        doomed = [
            row
            for n, row in enumerate(rows)
            if (n >= self.settings.build_keep_environments or row["last_used_at"] < oldest)
            and row["path"] not in self.disk.in_use
        ]
        if doomed:
            async with self.db.write() as tx:
                for row in doomed:
                    await repo.forget_environment(tx.conn, self.node_id, row["key"], row["path"])
        kept = {row["path"] for row in rows if row not in doomed}
        building = {str(self.root / key / build_id) for key, build_id in self._holders.items()}
        orphans = [path for path in await self.disk.directories() if path not in kept | building]
        await self.disk.remove([row["path"] for row in doomed] + orphans)
        return [row["key"] for row in doomed]

    # --- start and stop ---

    async def recover(self) -> None:
        """Builds this data directory left unfinished when its server stopped are cancelled
        (their directories go with the next collection)."""
        async with self.db.read() as conn:
            rows = await repo.unfinished(conn, self.node_id)
        for row in rows:
            error = {"code": "interrupted", "message": "the server stopped during the build"}
            await self._finish(row, "cancelled", error=error)

    def warm_up(self) -> None:
        """Find the interpreters now (asking each takes a second or more), not in the first
        request that needs them."""
        self._warming = asyncio.create_task(interpreters(self.settings.build_pythons))
        self._warming.add_done_callback(_log_failure)

    async def close(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
        for task in list(self.tasks.values()):
            task.cancel()
        for task in list(self.tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("finding the interpreters environments may use failed: %r", task.exception())
