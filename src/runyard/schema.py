"""Every feature's tables on the one :data:`runyard.db.base.metadata` (for Alembic and tests)."""

from runyard.agents import tables as _agents  # noqa: F401
from runyard.artifacts import tables as _artifacts  # noqa: F401
from runyard.audit import tables as _audit  # noqa: F401
from runyard.auth import tables as _auth  # noqa: F401
from runyard.builds import tables as _builds  # noqa: F401
from runyard.db.base import metadata
from runyard.events import tables as _events  # noqa: F401
from runyard.extraction import tables as _extraction  # noqa: F401
from runyard.idempotency import tables as _idempotency  # noqa: F401
from runyard.llm import tables as _llm  # noqa: F401
from runyard.pipelines import tables as _pipelines  # noqa: F401
from runyard.runners import tables as _runners  # noqa: F401
from runyard.runs import tables as _runs  # noqa: F401
from runyard.webhooks import tables as _webhooks  # noqa: F401
from runyard.workspaces import tables as _workspaces  # noqa: F401

__all__ = ["metadata"]
