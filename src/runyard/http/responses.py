"""Responses serialised with orjson straight from service dicts (no second validation pass)."""

from typing import Any

import orjson
from starlette.responses import Response


def json_response(
    data: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(data), status_code=status_code, headers=headers, media_type="application/json"
    )
