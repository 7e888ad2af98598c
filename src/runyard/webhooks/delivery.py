"""The delivery loop: sends due outbox rows, signed per Standard Webhooks, and records each
attempt.

One loop per server process, woken right after a commit that wrote deliveries
(:attr:`Outbox.wake`), when one of its own retries falls due, and every
:data:`POLL_SECONDS` for anything else due (another replica's retries, rows a dead server left
in flight). A claim sets a row's ``next_attempt_at`` to the end of a lease
(:func:`repo.claim`: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the write lock on SQLite), so
a row is never sent by two senders at once; the attempt is recorded only while the lease is
still the row's (a compare-and-set), and a lease that runs out (its server died) makes the
row due again. At most ``RUNYARD_WEBHOOK_CONCURRENCY`` attempts are in flight.

2xx is ``delivered``. Anything else — another status (redirects are not followed), a timeout,
a connection error, an address refused by :mod:`runyard.webhooks.targets` — is retried after
``RUNYARD_WEBHOOK_RETRY_BASE_SECONDS`` doubling per attempt, capped at an hour, until
``RUNYARD_WEBHOOK_MAX_ATTEMPTS`` attempts (the first included) make it ``dead``.
"""

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta
from typing import Any

import httpx

from runyard import __version__
from runyard.clock import utcnow
from runyard.db.engine import Database
from runyard.observability.metrics import Metrics
from runyard.settings import Settings
from runyard.webhooks import repo, signing, targets
from runyard.webhooks.outbox import Outbox

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 3600.0
#: a lease outlasts the longest attempt (resolving included) by this much
LEASE_MARGIN_SECONDS = 10.0
PURGE_EVERY_SECONDS = 300.0
#: at most this many of a host's addresses are tried when connecting fails
MAX_ADDRESSES = 3


def backoff(base_seconds: float, attempts: int) -> float:
    """Seconds before the attempt after ``attempts`` failed ones."""
    return float(min(base_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS))


class Deliverer:
    def __init__(self, db: Database, outbox: Outbox, metrics: Metrics, settings: Settings) -> None:
        self.db = db
        self.outbox = outbox
        self.metrics = metrics
        self.timeout = settings.webhook_timeout_seconds
        self.retry_base = settings.webhook_retry_base_seconds
        self.max_attempts = settings.webhook_max_attempts
        self.allow_private = settings.webhook_allow_private
        self.concurrency = settings.webhook_concurrency
        self.retention = timedelta(days=settings.webhook_retention_days)
        self.lease = timedelta(
            seconds=self.timeout + targets.RESOLVE_SECONDS + LEASE_MARGIN_SECONDS
        )
        #: attempts in flight: task → (delivery id, lease)
        self._inflight: dict[asyncio.Task[None], tuple[str, datetime]] = {}

    async def run_forever(self) -> None:
        wake = self.outbox.wake
        purged_at = time.monotonic()
        # one connection per attempt: attempts connect to checked addresses, so a pooled
        # connection could carry one host's request to another's TLS session. HTTP(S)_PROXY
        # is honoured, like the server's other outbound HTTP: the proxy is asked for the
        # checked address too.
        async with httpx.AsyncClient(
            timeout=self.timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client:
            try:
                while True:
                    wake.clear()
                    try:
                        await self._fill(client)
                        if time.monotonic() - purged_at > PURGE_EVERY_SECONDS:
                            purged_at = time.monotonic()
                            async with self.db.write() as tx:
                                await repo.purge_orphans(tx.conn)
                                await repo.purge_finished(tx.conn, utcnow() - self.retention)
                    except Exception:
                        log.exception("webhooks: claiming deliveries failed")
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(POLL_SECONDS):
                            await wake.wait()
            finally:
                await self._abandon()

    async def _fill(self, client: httpx.AsyncClient) -> None:
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return
        now = utcnow()
        async with self.db.read() as conn:
            if not await repo.any_due(conn, now):
                return
        lease = now + self.lease
        async with self.db.write() as tx:
            claimed = await repo.claim(tx.conn, now, lease, free)
        for row in claimed:
            task = asyncio.create_task(self._attempt(client, row, lease))
            self._inflight[task] = (row["id"], lease)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self.outbox.wake.set()  # a slot is free

    async def _attempt(
        self, client: httpx.AsyncClient, row: dict[str, Any], lease: datetime
    ) -> None:
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self.timeout):
                status = await self._post(client, row)
        except TimeoutError:
            error = f"no answer within {self.timeout:g} s"
        except targets.TargetRefused as exc:
            error = f"refused: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # a failed attempt all the same: it backs off and is retried
            log.exception("webhooks: attempt of delivery %s failed", row["id"])
            error = f"{type(exc).__name__}: {exc}"
        latency_ms = int((time.monotonic() - started) * 1000)
        if status is not None and not 200 <= status < 300:
            error = f"HTTP {status}"
        try:
            await self._record(row, lease, status, error, latency_ms)
        except Exception:  # the lease runs out and the row is retried
            log.exception("webhooks: recording delivery %s failed", row["id"])

    async def _post(self, client: httpx.AsyncClient, row: dict[str, Any]) -> int:
        """Send one attempt; the answer's status (the body is not read)."""
        url = httpx.URL(row["url"])
        addresses = await targets.addresses(row["url"], allow_private=self.allow_private)
        body = row["body"].encode()
        timestamp = int(time.time())
        headers = {
            "webhook-id": row["webhook_message_id"],
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.sign(
                row["secret"], row["webhook_message_id"], timestamp, body
            ),
            "X-Runyard-Event": row["event"],
            "Content-Type": "application/json",
            "User-Agent": f"Runyard-Webhooks/{__version__}",
        }
        failure: httpx.HTTPError | None = None
        for address in addresses[:MAX_ADDRESSES]:
            # connect to an address that was checked, speaking to the host by its name
            request = client.build_request(
                "POST",
                url.copy_with(host=address),
                content=body,
                headers={**headers, "Host": url.netloc.decode("ascii")},
                extensions={"sni_hostname": url.host} if url.scheme == "https" else None,
            )
            try:
                return await self._send(client, request)
            except httpx.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def _send(self, client: httpx.AsyncClient, request: httpx.Request) -> int:
        response = await client.send(request, stream=True)
        await response.aclose()
        return response.status_code

    async def _record(
        self,
        row: dict[str, Any],
        lease: datetime,
        status: int | None,
        error: str | None,
        latency_ms: int,
    ) -> None:
        attempts = row["attempts"] + 1
        now = utcnow()
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status_code": status,
            "last_error": error[:1000] if error else None,
            "last_latency_ms": latency_ms,
        }
        delay = None
        if error is None:
            result = "delivered"
            values.update(status=result, delivered_at=now, next_attempt_at=None)
        elif attempts >= self.max_attempts:
            result = "dead"
            values.update(status=result, next_attempt_at=None)
        else:
            result = "retrying"
            delay = backoff(self.retry_base, attempts)
            values.update(status=result, next_attempt_at=now + timedelta(seconds=delay))
        async with self.db.write() as tx:
            recorded = await repo.finish(tx.conn, row["id"], lease, values)
        if not recorded:
            log.warning("webhooks: delivery %s was taken over; attempt not recorded", row["id"])
            return
        self.metrics.webhook_deliveries.labels(result=result).inc()
        if delay is not None and delay < POLL_SECONDS:
            asyncio.get_running_loop().call_later(delay, self.outbox.wake.set)

    async def _abandon(self) -> None:
        """On shutdown: stop the attempts in flight and make their rows due again at once."""
        inflight = dict(self._inflight)
        for task in inflight:
            task.cancel()
        for task, (delivery_id, lease) in inflight.items():
            with contextlib.suppress(asyncio.CancelledError):
                await task
            try:
                async with self.db.write() as tx:
                    await repo.finish(tx.conn, delivery_id, lease, {"next_attempt_at": utcnow()})
            except Exception:  # the lease runs out instead
                log.warning("webhooks: could not hand back delivery %s", delivery_id)
