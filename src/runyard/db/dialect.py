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


def milliseconds_between(dialect: str, start: Any, end: Any) -> ColumnElement[int]:
    """Whole milliseconds from ``start`` to ``end`` (``UTCDateTime`` columns); NULL when either
    is NULL. For aggregates over many rows, so each dialect's cheapest exact-enough form.

    PostgreSQL: exact, truncated toward zero as :func:`runyard.clock.ms_between` counts them
    (the interval's seconds as a double, rounded to whole microseconds first; ``EXTRACT``
    would return numeric, slower). SQLite: ``julianday``, which reads a timestamp to the
    nearest millisecond, so a duration can be 1 ms off the exact one when the timestamps have
    microseconds. Parsing the microseconds as well (``strftime`` of the whole seconds plus the
    fraction's digits) made an SLO over 90,000 runs take twice as long."""
    if dialect == "postgresql":
        seconds = sa.func.date_part("epoch", end - start)
        return sa.cast(sa.func.round(seconds * 1_000_000), sa.BigInteger) // 1000
    days = sa.func.julianday(end) - sa.func.julianday(start)
    return sa.cast(sa.func.round(days * 86_400_000), sa.BigInteger)


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
