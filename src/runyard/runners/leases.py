"""The sweeper: a background task that ends leases runners stopped renewing, cancels whose
deadline passed, and approval gates that expired."""

import asyncio
import logging

from runyard.runs.service import RunService

log = logging.getLogger(__name__)


async def sweep_forever(runs: RunService, interval: float) -> None:
    """Every ``interval`` seconds, expire what is due; runs until cancelled."""
    while True:
        try:
            await runs.expire_leases()
            await runs.expire_approvals()
        except Exception:  # a failed pass (database away) is retried next interval
            log.exception("lease sweep failed")
        await asyncio.sleep(interval)


def sweep_interval(lease_seconds: int) -> float:
    """``min(5, lease/3)`` seconds (DESIGN §15)."""
    return min(5.0, lease_seconds / 3)
