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
