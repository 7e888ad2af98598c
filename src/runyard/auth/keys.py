"""API key secrets (DESIGN §4): ``ryk_<prefix>_<secret>``, stored as a SHA-256 of the whole.

The secret part carries 256 random bits, so a fast hash is enough (no password stretching);
the prefix finds the row, and the hash is compared in constant time.
"""

import hashlib
import hmac
import secrets

SCHEME = "ryk"


def new_secret() -> tuple[str, str]:
    """``(prefix, full secret)`` for a new key."""
    prefix = secrets.token_hex(6)  # 12 hex characters: 48 bits, unique per server
    return prefix, f"{SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def prefix_of(secret: str) -> str | None:
    """The prefix of something shaped like an API key, else None."""
    scheme, _, rest = secret.partition("_")
    prefix, _, body = rest.partition("_")
    if scheme != SCHEME or len(prefix) != 12 or not body:
        return None
    return prefix


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
