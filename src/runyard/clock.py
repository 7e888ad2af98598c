"""Time, always timezone-aware UTC, rendered as RFC 3339 with ``Z``."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(value: datetime | None) -> str | None:
    """RFC 3339 with millisecond precision and a ``Z`` suffix; ``None`` passes through."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse(value: str) -> datetime:
    """Parse an RFC 3339 timestamp; naive values are refused."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp must carry a timezone")
    return parsed.astimezone(UTC)
