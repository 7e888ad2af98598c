"""Webhook subscriptions (DESIGN §11, §15): admins create, list, change and delete them, read
their delivery log and redeliver; the operator's ``RUNYARD_WEBHOOK_URL`` subscription."""

import logging
from typing import Any

from sqlalchemy.exc import IntegrityError

from runyard.audit.service import AuditService
from runyard.broker import Broker
from runyard.clock import isoformat, utcnow
from runyard.context import Caller
from runyard.db.engine import Database, Tx
from runyard.http.pagination import decode_cursor, page_of
from runyard.ids import new_id
from runyard.problems import InvalidInput, NotFound
from runyard.settings import Settings
from runyard.webhooks import repo, signing, targets
from runyard.webhooks.outbox import CHANGES, Outbox

log = logging.getLogger(__name__)

#: ``managed_by`` of the subscription made from ``RUNYARD_WEBHOOK_URL``
FROM_SETTINGS = "settings"
SETTINGS_ACTOR = "runyard:settings"
DEFAULT_WORKSPACE = "ws_default"
DEFAULT_EVENTS = ["run.*"]


def _webhook_not_found(webhook_id: str) -> NotFound:
    return NotFound(f"webhook {webhook_id} not found", code="webhook_not_found")


def _delivery_not_found(webhook_id: str, delivery_id: str) -> NotFound:
    return NotFound(
        f"delivery {delivery_id} of webhook {webhook_id} not found",
        code="webhook_delivery_not_found",
    )


def webhook_resource(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "webhook",
        "workspace_id": row["workspace_id"],
        "url": row["url"],
        "events": row["events"],
        "enabled": row["enabled"],
        "created_by": row["created_by"],
        "created_at": isoformat(row["created_at"]),
        "updated_at": isoformat(row["updated_at"]),
    }


def delivery_resource(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "webhook_delivery",
        "webhook_id": row["webhook_id"],
        "event": row["event"],
        "event_id": row["event_id"],
        "run_id": row["run_id"],
        "webhook_message_id": row["webhook_message_id"],
        "redelivery_of": row["redelivery_of"],
        "status": row["status"],
        "attempts": row["attempts"],
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "last_latency_ms": row["last_latency_ms"],
        "next_attempt_at": isoformat(row["next_attempt_at"]),
        "delivered_at": isoformat(row["delivered_at"]),
        "created_at": isoformat(row["created_at"]),
    }


class WebhookService:
    def __init__(
        self, db: Database, broker: Broker, audit: AuditService, outbox: Outbox, settings: Settings
    ) -> None:
        self.db = db
        self.broker = broker
        self.audit = audit
        self.outbox = outbox
        self.allow_private = settings.webhook_allow_private

    async def create(
        self, caller: Caller, *, url: str, events: list[str], secret: str | None = None
    ) -> dict[str, Any]:
        """A new subscription; the answer holds its secret, never shown again."""
        await self._check_url(url)
        now = utcnow()
        row: dict[str, Any] = {
            "id": new_id("wh"),
            "workspace_id": caller.workspace_id,
            "url": url,
            "events": events,
            "secret": secret or signing.new_secret(),
            "enabled": True,
            "managed_by": None,
            "created_by": caller.actor,
            "created_at": now,
            "updated_at": now,
        }
        async with self.db.write() as tx:
            await repo.insert_webhook(tx.conn, row)
            await self.audit.record(
                tx, caller, "webhook.create", "webhook", row["id"], {"url": url, "events": events}
            )
            self._changed(tx, caller.workspace_id)
        return {**webhook_resource(row), "secret": row["secret"]}

    async def list_page(self, caller: Caller, *, limit: int, cursor: str | None) -> dict[str, Any]:
        """The workspace's subscriptions, newest first (keyset cursor)."""
        after = decode_cursor(cursor)
        async with self.db.read() as conn:
            rows = await repo.list_webhooks(conn, caller.workspace_id, limit=limit + 1, after=after)
        rows, next_cursor, has_more = page_of(rows, limit)
        return {
            "data": [webhook_resource(r) for r in rows],
            "next_cursor": next_cursor,
            "has_more": has_more,
        }

    async def get(self, caller: Caller, webhook_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await repo.get_webhook(conn, caller.workspace_id, webhook_id)
        if row is None:
            raise _webhook_not_found(webhook_id)
        return webhook_resource(row)

    async def update(
        self,
        caller: Caller,
        webhook_id: str,
        *,
        url: str | None = None,
        events: list[str] | None = None,
        enabled: bool | None = None,
        secret: str | None = None,
    ) -> dict[str, Any]:
        """Change what is given; a new ``secret`` signs every attempt from now on."""
        if url is not None:
            await self._check_url(url)
        values: dict[str, Any] = {
            name: value
            for name, value in (("url", url), ("events", events), ("enabled", enabled))
            if value is not None
        }
        details: dict[str, Any] = dict(values)
        if secret is not None:
            values["secret"] = secret
            details["secret_rotated"] = True
        async with self.db.write() as tx:
            row = await repo.get_webhook(tx.conn, caller.workspace_id, webhook_id, for_update=True)
            if row is None:
                raise _webhook_not_found(webhook_id)
            if values:
                values["updated_at"] = utcnow()
                await repo.update_webhook(tx.conn, webhook_id, values)
                row.update(values)
                await self.audit.record(
                    tx, caller, "webhook.update", "webhook", webhook_id, details
                )
                self._changed(tx, caller.workspace_id)
            if enabled:
                tx.after_commit(self.outbox.notify)  # its waiting deliveries may go now
        return webhook_resource(row)

    async def delete(self, caller: Caller, webhook_id: str) -> None:
        """Delete a subscription and its delivery log."""
        async with self.db.write() as tx:
            row = await repo.get_webhook(tx.conn, caller.workspace_id, webhook_id, for_update=True)
            if row is None:
                raise _webhook_not_found(webhook_id)
            await repo.delete_webhook(tx.conn, webhook_id)
            await self.audit.record(
                tx, caller, "webhook.delete", "webhook", webhook_id, {"url": row["url"]}
            )
            self._changed(tx, caller.workspace_id)

    async def deliveries_page(
        self,
        caller: Caller,
        webhook_id: str,
        *,
        limit: int,
        cursor: str | None,
        status: str | None = None,
    ) -> dict[str, Any]:
        """A subscription's deliveries, newest first (keyset cursor)."""
        after = decode_cursor(cursor)
        async with self.db.read() as conn:
            if await repo.get_webhook(conn, caller.workspace_id, webhook_id) is None:
                raise _webhook_not_found(webhook_id)
            rows = await repo.list_deliveries(
                conn, webhook_id, limit=limit + 1, after=after, status=status
            )
        rows, next_cursor, has_more = page_of(rows, limit)
        return {
            "data": [delivery_resource(r) for r in rows],
            "next_cursor": next_cursor,
            "has_more": has_more,
        }

    async def delivery(self, caller: Caller, webhook_id: str, delivery_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await repo.get_delivery(conn, caller.workspace_id, webhook_id, delivery_id)
        if row is None:
            raise _delivery_not_found(webhook_id, delivery_id)
        return delivery_resource(row)

    async def redeliver(self, caller: Caller, webhook_id: str, delivery_id: str) -> dict[str, Any]:
        """Send a delivery's message again, as a new delivery record with the same body and
        ``webhook-id`` (receivers deduplicate by it); the original record stays as it was."""
        now = utcnow()
        async with self.db.write() as tx:
            original = await repo.get_delivery(
                tx.conn, caller.workspace_id, webhook_id, delivery_id
            )
            if original is None:
                raise _delivery_not_found(webhook_id, delivery_id)
            row = {
                **original,
                "id": new_id("whd"),
                "redelivery_of": delivery_id,
                "status": "pending",
                "attempts": 0,
                "last_status_code": None,
                "last_error": None,
                "last_latency_ms": None,
                "next_attempt_at": now,
                "delivered_at": None,
                "created_at": now,
            }
            await repo.insert_deliveries(tx.conn, [row])
            await self.audit.record(
                tx,
                caller,
                "webhook.redeliver",
                "webhook",
                webhook_id,
                {"delivery_id": delivery_id, "redelivery_id": row["id"]},
            )
            tx.after_commit(self.outbox.notify)
        return delivery_resource(row)

    async def ensure_from_settings(self, url: str, secret: str | None) -> None:
        """The default workspace's subscription to ``run.*`` at ``RUNYARD_WEBHOOK_URL``, made
        once (a unique ``managed_by`` keeps replicas starting together from making two). A
        changed URL or ``RUNYARD_WEBHOOK_SECRET`` updates it. Without a configured secret, the
        generated one is logged once, when the subscription is made."""
        try:
            targets.parse(url)
            if secret is not None:
                signing.key_of(secret)
        except (targets.TargetRefused, ValueError) as exc:
            raise ValueError(f"RUNYARD_WEBHOOK_URL / RUNYARD_WEBHOOK_SECRET: {exc}") from exc
        try:
            await targets.check(url, allow_private=self.allow_private)
        except targets.TargetRefused as exc:
            log.warning("RUNYARD_WEBHOOK_URL: deliveries will be refused: %s", exc)
        caller = Caller(workspace_id=DEFAULT_WORKSPACE, actor=SETTINGS_ACTOR)
        async with self.db.write() as tx:
            existing = await repo.managed_webhook(tx.conn, FROM_SETTINGS)
            if existing is not None:
                values: dict[str, Any] = {}
                if existing["url"] != url:
                    values["url"] = url
                if secret is not None and existing["secret"] != secret:
                    values["secret"] = secret
                if values:
                    values["updated_at"] = utcnow()
                    await repo.update_webhook(tx.conn, existing["id"], values)
                    details: dict[str, Any] = {"url": url} if "url" in values else {}
                    if "secret" in values:
                        details["secret_rotated"] = True
                    await self.audit.record(
                        tx, caller, "webhook.update", "webhook", existing["id"], details
                    )
                    self._changed(tx, DEFAULT_WORKSPACE)
                return
        now = utcnow()
        row: dict[str, Any] = {
            "id": new_id("wh"),
            "workspace_id": DEFAULT_WORKSPACE,
            "url": url,
            "events": DEFAULT_EVENTS,
            "secret": secret or signing.new_secret(),
            "enabled": True,
            "managed_by": FROM_SETTINGS,
            "created_by": SETTINGS_ACTOR,
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self.db.write() as tx:
                await repo.insert_webhook(tx.conn, row)
                await self.audit.record(
                    tx,
                    caller,
                    "webhook.create",
                    "webhook",
                    row["id"],
                    {"url": url, "events": DEFAULT_EVENTS},
                )
                self._changed(tx, DEFAULT_WORKSPACE)
        except IntegrityError:  # another replica made it first
            return
        if secret is None:
            log.warning(
                "made webhook %s for RUNYARD_WEBHOOK_URL (run.* of %s); its signing secret, "
                "shown only now (set RUNYARD_WEBHOOK_SECRET to choose it): %s",
                row["id"],
                DEFAULT_WORKSPACE,
                row["secret"],
            )
        else:
            log.info("made webhook %s for RUNYARD_WEBHOOK_URL", row["id"])

    async def _check_url(self, url: str) -> None:
        try:
            await targets.check(url, allow_private=self.allow_private)
        except targets.TargetRefused as exc:
            raise InvalidInput(
                f"url: {exc}", errors=[{"loc": ["body", "url"], "msg": str(exc)}]
            ) from exc

    def _changed(self, tx: Tx, workspace_id: str) -> None:
        """After commit: forget the workspace's cached subscriptions here and on replicas."""

        async def announce() -> None:
            self.outbox.invalidate(workspace_id)
            await self.broker.publish(CHANGES, workspace_id.encode())

        tx.after_commit(announce)
