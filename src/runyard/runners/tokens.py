"""Runner tokens (DESIGN §8): HS256 JWTs scoped to one run.

Claims: ``sub`` (the run id), ``ws`` (its workspace), ``attempt``, ``lease`` (the lease id the
token was issued with) and ``exp``. The signing key comes from ``RUNYARD_SECRET_KEY`` or is
generated once into the data directory.
"""

import os
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from runyard.clock import utcnow
from runyard.problems import Unauthorized
from runyard.settings import Settings

ALGORITHM = "HS256"


def load_secret(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path: Path = settings.data_dir / "secret.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def looks_like_token(value: str) -> bool:
    return value.count(".") == 2


class RunnerTokens:
    def __init__(self, secret: bytes, lifetime: timedelta) -> None:
        self._secret = secret
        self.lifetime = lifetime

    def issue(
        self, *, run_id: str, workspace_id: str, attempt: int, lease_id: str | None
    ) -> tuple[str, datetime]:
        expires_at = utcnow() + self.lifetime
        claims = {
            "sub": run_id,
            "ws": workspace_id,
            "attempt": attempt,
            "lease": lease_id,
            "exp": int(expires_at.timestamp()),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), expires_at

    def verify(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the runner token has expired; refresh it") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("the runner token is not valid") from exc
        return claims
