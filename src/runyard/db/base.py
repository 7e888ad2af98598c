"""Shared metadata and column types. Imports no feature."""

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

#: JSON documents: ``JSONB`` on PostgreSQL, JSON text on SQLite.
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def utc(value: datetime) -> datetime:
    """``value`` in UTC; naive datetimes are refused, never guessed."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; use runyard.clock.utcnow()")
    return value.astimezone(UTC) if value.utcoffset() else value


def sqlite_datetime_text(value: datetime) -> str:
    """How a timestamp is stored on SQLite: SQLAlchemy's own DATETIME text format,
    ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC."""
    return utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


class _SQLiteDateTime(sqlite.DATETIME):
    """SQLite DATETIME text read with the C ``fromisoformat`` instead of the dialect's regular
    expression (and written by :class:`UTCDateTime` with ``isoformat`` instead of strftime):
    several µs less per value, which the event hot path feels."""

    def bind_processor(self, dialect: Dialect) -> Any:
        return None  # UTCDateTime hands over the text already

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        def process(value: str | None) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value)

        return process


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that refuses naive datetimes and always reads back as aware UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLiteDateTime())  # type: ignore[no-untyped-call]
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return sqlite_datetime_text(value)
        return utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
