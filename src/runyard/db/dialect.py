"""Where SQLite and PostgreSQL differ in SQL, and nowhere else."""

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement


def json_scalar_text(dialect: str, column: Any, path: list[str]) -> ColumnElement[Any]:
    """Text of the JSON scalar at ``path``: ``3`` → ``'3'``, ``true`` → ``'true'``."""
    if dialect == "postgresql":
        return column[tuple(path)].as_string()  # type: ignore[no-any-return]
    json_path = "$" + "".join(f'."{key}"' for key in path)
    kind = sa.func.json_type(column, json_path)
    return sa.case(
        (kind == "true", sa.literal("true")),
        (kind == "false", sa.literal("false")),
        else_=sa.cast(sa.func.json_extract(column, json_path), sa.Text),
    )


def json_array_contains(dialect: str, column: Any, value: str) -> ColumnElement[bool]:
    """True when the JSON array in ``column`` holds the string ``value``."""
    if dialect == "postgresql":
        return sa.type_coerce(column, JSONB).contains([value])
    items = sa.func.json_each(column).table_valued("value").alias("items")
    return sa.exists().select_from(items).where(items.c.value == value)


def epoch_microseconds(dialect: str, column: Any) -> ColumnElement[int]:
    """Whole microseconds since 1970 of a ``UTCDateTime`` column, exactly: PostgreSQL's
    ``EXTRACT(EPOCH ...)`` is exact (numeric); SQLite keeps ``YYYY-MM-DD HH:MM:SS.ffffff`` text
    (:func:`runyard.db.base.sqlite_datetime_text`): whole seconds from ``strftime('%s')`` plus
    the six digits of the fraction (``julianday`` would round to the millisecond, in a float)."""
    if dialect == "postgresql":
        return sa.cast(sa.extract("epoch", column) * 1_000_000, sa.BigInteger)
    seconds = sa.cast(sa.func.strftime("%s", column), sa.BigInteger)
    return seconds * 1_000_000 + sa.cast(sa.func.substr(column, 21, 6), sa.BigInteger)


def milliseconds_between(dialect: str, start: Any, end: Any) -> ColumnElement[int]:
    """Whole milliseconds from ``start`` to ``end``, truncated toward zero (as
    :func:`runyard.clock.ms_between` counts them); NULL when either is."""
    micros = epoch_microseconds(dialect, end) - epoch_microseconds(dialect, start)
    return sa.cast(micros, sa.BigInteger) // 1000


def json_number(dialect: str, column: Any, key: str) -> ColumnElement[float]:
    """The number at ``column[key]`` of a JSON object; NULL when it is missing or not a
    number (a string, a boolean, an object), so no cast can fail on stored data."""
    if dialect == "postgresql":
        value = sa.type_coerce(column, JSONB)[key]
        return sa.case((sa.func.jsonb_typeof(value) == "number", value.as_float()))
    path = f'$."{key}"'
    return sa.case(
        (
            sa.func.json_type(column, path).in_(("integer", "real")),
            sa.cast(sa.func.json_extract(column, path), sa.Float),
        )
    )
