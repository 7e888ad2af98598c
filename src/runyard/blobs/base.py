"""The blob store seam: where artifact bytes live. Implementations: :mod:`.local`.

Keys are relative, ``/``-separated paths such as ``runs/<run id>/outputs/report.html``;
:func:`check_key` refuses anything that could step outside the store.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from runyard.problems import InvalidInput


@dataclass(frozen=True, slots=True)
class BlobInfo:
    size: int
    sha256: str | None = None


class TooLarge(Exception):
    """The stream went past ``max_bytes``; nothing was stored."""


def check_key(key: str, *, prefix: str = "") -> str:
    """``key`` when it is a clean relative path under ``prefix``; 400 otherwise."""
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or any(part in ("", ".", "..") for part in parts)
        or "\x00" in key
    ):
        raise InvalidInput(
            f"storage key {key!r} is not a clean relative path",
            errors=[{"loc": ["body", "storage_key"], "msg": "no '..', absolute or empty parts"}],
        )
    if prefix and not key.startswith(prefix):
        raise InvalidInput(
            f"storage key {key!r} is outside this run's prefix {prefix!r}",
            errors=[{"loc": ["body", "storage_key"], "msg": f"must start with {prefix}"}],
        )
    return key


class BlobStore(Protocol):
    async def put(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> BlobInfo:
        """Store the stream under ``key`` (all or nothing), computing its size and sha256."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes ``start``..``end`` (inclusive) of a blob, in chunks."""

    async def stat(self, key: str) -> BlobInfo | None:
        """Size of a stored blob, or None when there is none."""

    async def delete_prefix(self, prefix: str) -> None:
        """Remove every blob under ``prefix``."""

    async def ping(self) -> None:
        """Raise when the store cannot be used."""
