"""Prefixed ULID identifiers: ``run_01JD9...`` sorts by creation time."""

import re

from ulid import ULID

RUN_ID_PATTERN = re.compile(r"^run_[0-9A-Za-z]{10,40}$")


def new_id(prefix: str) -> str:
    """A new id such as ``run_01JD9ZC4...`` for the given prefix (without the underscore)."""
    return f"{prefix}_{ULID()}"
