"""Stopping an app's services: every background loop is cancelled and waited for, and one
that ends with an error while being cancelled does not fail the shutdown."""

import asyncio

import pytest

from runyard.container import Services
from runyard.observability.metrics import Metrics
from runyard.settings import Settings

pytestmark = pytest.mark.anyio


async def connect_cut_short() -> None:
    """Ends as a database connect cancelled during its SSL negotiation can: with the error."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        raise ConnectionError("unexpected connection_lost() call") from None


async def test_a_loop_failing_as_it_is_cancelled_does_not_stop_the_shutdown(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    services = await Services.start(settings, Metrics())
    failing = asyncio.create_task(connect_cut_short())
    services._tasks.insert(0, failing)
    others = services._tasks[1:]
    await asyncio.sleep(0)
    await services.db.ping()

    await services.stop()

    assert all(t.done() for t in services._tasks)
    assert all(t.cancelled() for t in others)
    assert "connect_cut_short ended with an error while stopping" in caplog.text
    assert "unexpected connection_lost() call" in caplog.text
