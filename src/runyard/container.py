"""The services of one app, built by the lifespan and kept on ``app.state.services``."""

import asyncio
import functools
import importlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta

import httpx

from runyard.agents.service import AgentService
from runyard.agents.turn import TurnTools
from runyard.artifacts.service import ArtifactService
from runyard.audit.service import AuditService
from runyard.auth.service import ApiKeyService
from runyard.auth.sessions import SessionService
from runyard.blobs import BlobStore, blobs_from_url
from runyard.broker import Broker, broker_from_url
from runyard.builds.service import BuildService
from runyard.builds.specs import check_environment
from runyard.db.engine import Database
from runyard.db.migrate import upgrade
from runyard.events.service import EventService
from runyard.extraction.documents import DocumentService
from runyard.extraction.evaluations import PIPELINE as EXTRACT_PIPELINE
from runyard.extraction.evaluations import EvaluationService
from runyard.extraction.service import ExtractionService
from runyard.http.ratelimit import RateLimiter
from runyard.idempotency.service import IdempotencyStore
from runyard.llm.secrets import SecretBox, load_secrets_key
from runyard.llm.service import LlmService
from runyard.observability.analytics import AnalyticsService
from runyard.observability.metrics import Metrics
from runyard.observability.service import OperationsService
from runyard.pipelines.bundles import BundleService
from runyard.pipelines.service import PipelineService
from runyard.runners.leases import sweep_forever, sweep_interval
from runyard.runners.push import Pusher
from runyard.runners.service import RunnerService
from runyard.runners.tokens import RunnerTokens, load_secret
from runyard.runs.insights import RunInsights
from runyard.runs.service import RunService
from runyard.runs.snapshot import run_snapshot
from runyard.settings import Settings
from runyard.webhooks.delivery import Deliverer
from runyard.webhooks.outbox import Outbox
from runyard.webhooks.service import WebhookService
from runyard.worker.execution import WorkerTools
from runyard.worker.llm_step import ModelCalls
from runyard.worker.loop import EmbeddedWorker
from runyard.workspaces.quotas import Quotas
from runyard.workspaces.service import WorkspaceService

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    db: Database
    broker: Broker
    metrics: Metrics
    audit: AuditService
    events: EventService
    workspaces: WorkspaceService
    pipelines: PipelineService
    runs: RunService
    runners: RunnerService
    tokens: RunnerTokens
    operations: OperationsService
    insights: RunInsights
    blobs: BlobStore
    artifacts: ArtifactService
    keys: ApiKeyService
    idempotency: IdempotencyStore
    quotas: Quotas
    sessions: SessionService = field(init=False)
    #: None unless RUNYARD_RATE_LIMIT_PER_SECOND is set
    limiter: RateLimiter | None = field(init=False, default=None)
    webhooks: WebhookService = field(init=False)
    llm: LlmService = field(init=False)
    agents: AgentService = field(init=False)
    bundles: BundleService = field(init=False)
    builds: BuildService = field(init=False)
    extraction: ExtractionService = field(init=False)
    documents: DocumentService = field(init=False)
    evaluations: EvaluationService = field(init=False)
    analytics: AnalyticsService = field(init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _clients: list[httpx.AsyncClient] = field(default_factory=list)

    @classmethod
    async def start(cls, settings: Settings, metrics: Metrics) -> "Services":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        secrets = SecretBox(load_secrets_key(settings))  # first: a bad key fails the start
        db = Database(
            settings.resolved_database_url(),
            schema=settings.database_schema,
            pool_size=settings.database_pool_size,
        )
        await upgrade(db)
        broker = broker_from_url(settings.broker_url)
        audit = AuditService(db)
        outbox = Outbox(run_snapshot)
        events = EventService(db, broker, metrics, outbox)
        workspaces = WorkspaceService(
            db, audit, tiers=settings.tiers, default_tier=settings.default_tier
        )
        await workspaces.ensure_default()
        quotas = Quotas(db, workspaces)
        pipelines = PipelineService(
            db,
            audit,
            functools.partial(
                check_environment,
                pythons=settings.build_pythons,
                package_dirs=settings.build_package_dirs,
            ),
        )
        runs = RunService(db, broker, events, pipelines, audit, metrics, settings, quotas)
        tokens = RunnerTokens(load_secret(settings), timedelta(hours=settings.runner_token_hours))
        runners = RunnerService(db, broker, runs, tokens, settings)
        blobs = blobs_from_url(settings.blobs_url, settings.data_dir)
        artifacts = ArtifactService(db, blobs, runs, settings.artifact_max_bytes)
        operations = OperationsService(db, broker, blobs, runs, runners, events)
        services = cls(
            settings,
            db,
            broker,
            metrics,
            audit,
            events,
            workspaces,
            pipelines,
            runs,
            runners,
            tokens,
            operations,
            RunInsights(db, events),  # its environment records are wired below
            blobs,
            artifacts,
            ApiKeyService(db, audit),
            IdempotencyStore(db),
            quotas,
        )
        services.sessions = SessionService(
            db, audit, services.keys, timedelta(hours=settings.session_hours)
        )
        services.limiter = RateLimiter.from_settings(settings)
        services.analytics = AnalyticsService(db, pipelines)
        services.webhooks = WebhookService(db, broker, audit, outbox, settings)
        services.llm = LlmService(db, audit, secrets)
        services.agents = AgentService(
            db, runs, events, pipelines, audit, services.llm, turns_enabled=settings.worker_enabled
        )
        services.bundles = BundleService(
            db,
            blobs,
            pipelines,
            audit,
            max_bytes=settings.bundle_max_bytes,
            max_unpacked_bytes=settings.bundle_max_unpacked_bytes,
        )
        services.builds = BuildService(db, events, blobs, pipelines, audit, settings)
        services.builds.warm_up()
        services.insights.environment = services.builds.environment_record
        await services.builds.recover()
        services.extraction = ExtractionService(db, audit)
        runs.input_checks[EXTRACT_PIPELINE] = services.extraction.check_run_input
        services.documents = DocumentService(db, audit, settings.document_max_bytes)
        services.evaluations = EvaluationService(db, runs, pipelines, services.extraction, audit)
        if settings.webhook_url:
            secret = settings.webhook_secret
            await services.webhooks.ensure_from_settings(
                settings.webhook_url, secret.get_secret_value() if secret else None
            )
        services._tasks.append(asyncio.create_task(outbox.follow_changes(broker)))
        deliverer = Deliverer(db, outbox, metrics, settings)
        services._tasks.append(asyncio.create_task(deliverer.run_forever()))
        pusher = Pusher(
            runs,
            pipelines,
            tokens,
            broker,
            settings.resolved_public_url(),
            settings.push_retry_base_seconds,
        )
        services._tasks.append(asyncio.create_task(pusher.run_forever()))
        interval = sweep_interval(settings.lease_seconds)
        services._tasks.append(asyncio.create_task(sweep_forever(runs, interval)))
        services._tasks.append(asyncio.create_task(_purge_forever(services.idempotency)))
        if settings.worker_enabled:
            tools = WorkerTools(
                artifacts,
                tokens,
                httpx.AsyncClient(),
                settings.resolved_public_url(),
                settings.push_retry_base_seconds,
                ModelCalls(
                    services.llm,
                    settings.model_timeout_seconds,
                    settings.model_max_retries,
                    settings.model_retry_base_seconds,
                ),
                services.extraction,
                services.builds,
            )
            services._clients.append(tools.http)
            worker = EmbeddedWorker(
                runs,
                pipelines,
                tools,
                broker,
                settings.data_dir / "work",
                settings.worker_concurrency,
                turns=TurnTools(services.agents, broker, tools.http, settings),
            )
            # the model SDKs take seconds to import: not on the event loop at the first turn
            services._tasks.append(asyncio.create_task(_import_model_clients()))
            operations.worker_task = asyncio.create_task(worker.run_forever())
            services._tasks.append(operations.worker_task)
        return services

    async def stop(self) -> None:
        """Cancel the background loops, one after another, before closing what they use.

        A loop cancelled in the middle of a database connect may end with that connect's error
        (asyncpg's SSL negotiation reports the closed socket as a ``ConnectionError``) instead
        of ``CancelledError``: it is logged, and the shutdown goes on."""
        await self.builds.close()
        for task in self._tasks:  # one at a time, in the order they were started
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as exc:
                name = getattr(task.get_coro(), "__qualname__", task.get_name())
                log.warning("%s ended with an error while stopping: %r", name, exc)
        for client in self._clients:
            await client.aclose()
        await self.idempotency.close()
        await self.broker.close()
        await self.db.dispose()


PURGE_SECONDS = 300.0


async def _import_model_clients() -> None:
    for module in ("runyard.llm.openai_client", "runyard.llm.anthropic_client"):
        await asyncio.to_thread(importlib.import_module, module)


async def _purge_forever(store: IdempotencyStore) -> None:
    """Drop idempotency keys past their 24 h (expired ones are ignored before that anyway)."""
    while True:
        await asyncio.sleep(PURGE_SECONDS)
        try:
            await store.purge_expired()
        except Exception:
            log.exception("purging expired idempotency keys failed")
