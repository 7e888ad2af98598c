"""Time, always timezone-aware UTC, rendered as RFC 3339 with ``Z``."""

from datetime import UTC, datetime, timedelta

MILLISECOND = timedelta(milliseconds=1)


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


def ms_between(start: datetime | str | None, end: datetime | str | None) -> int | None:
    """Whole milliseconds from ``start`` to ``end`` (datetimes or RFC 3339), truncated toward
    zero; None if either is. Integer arithmetic on the timedelta: ``total_seconds() * 1000``
    is a float product that reads 1.001 s as 1000.999… and truncates it to 1000."""
    if start is None or end is None:
        return None
    start = parse(start) if isinstance(start, str) else start
    end = parse(end) if isinstance(end, str) else end
    return int((end - start) / MILLISECOND)


def parse(value: str) -> datetime:
    """Parse an RFC 3339 timestamp; naive values are refused."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp must carry a timezone")
    return parsed.astimezone(UTC)
