"""The services of one app, built by the lifespan and kept on ``app.state.services``."""

from dataclasses import dataclass

from runyard.audit.service import AuditService
from runyard.broker import Broker, broker_from_url
from runyard.db.engine import Database
from runyard.db.migrate import upgrade
from runyard.events.service import EventService
from runyard.observability.metrics import Metrics
from runyard.pipelines.service import PipelineService
from runyard.runs.service import RunService
from runyard.settings import Settings
from runyard.workspaces.service import WorkspaceService


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

    @classmethod
    async def start(cls, settings: Settings, metrics: Metrics) -> "Services":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(
            settings.resolved_database_url(),
            schema=settings.database_schema,
            pool_size=settings.database_pool_size,
        )
        await upgrade(db)
        broker = broker_from_url(settings.broker_url)
        audit = AuditService(db)
        events = EventService(db, broker, metrics)
        workspaces = WorkspaceService(db)
        await workspaces.ensure_default()
        pipelines = PipelineService(db, audit)
        runs = RunService(db, events, pipelines, audit, metrics)
        return cls(settings, db, broker, metrics, audit, events, workspaces, pipelines, runs)

    async def stop(self) -> None:
        await self.broker.close()
        await self.db.dispose()
