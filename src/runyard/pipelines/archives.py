"""Checking a pipeline bundle (DESIGN §7) before it is kept: a zip, a tar or a gzipped tar of
step code whose every entry stays inside the bundle root.

Refused with 400 ``bundle_unsafe``: absolute paths, ``..`` parts, backslashes, drive letters,
links (symbolic or hard) whose target lies outside the root, devices and FIFOs. Refused with
400 ``bundle_invalid``: what is not one of the three formats, or is damaged. Refused with 413:
more than ``max_unpacked_bytes`` once unpacked, or more than :data:`MAX_FILES` entries (a
zip bomb is caught by the sizes its entries declare, before anything is unpacked).
"""

import io
import posixpath
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from runyard.problems import BadRequest, PayloadTooLarge

MAX_FILES = 20_000
Format = Literal["zip", "tar", "tar.gz"]


@dataclass(frozen=True)
class Inspected:
    format: Format
    files: list[str]  # regular files, sorted
    unpacked_bytes: int


def format_of(data: bytes) -> Format:
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if data.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if data[257:262] == b"ustar":
        return "tar"
    raise BadRequest(
        "a bundle is a zip, a tar or a gzipped tar (application/zip, application/gzip, "
        "application/x-tar)",
        code="bundle_invalid",
    )


def inspect(data: bytes, *, max_unpacked_bytes: int) -> Inspected:
    kind = format_of(data)
    entries = _zip_entries(data) if kind == "zip" else _tar_entries(data, kind)
    try:
        return _check(kind, entries, max_unpacked_bytes)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BadRequest(f"the {kind} bundle is damaged: {exc}", code="bundle_invalid") from exc


def _check(kind: Format, entries: Iterator["Entry"], max_unpacked_bytes: int) -> Inspected:
    files: list[str] = []
    total = 0
    for count, (name, kind_of_entry, size, target) in enumerate(entries, start=1):
        if count > MAX_FILES:
            raise PayloadTooLarge(f"a bundle holds at most {MAX_FILES} entries", limit=MAX_FILES)
        path = _clean(name)
        if kind_of_entry == "symlink":
            _inside(posixpath.join(posixpath.dirname(path), target), name, target)
        elif kind_of_entry == "hardlink":
            _inside(target, name, target)
        elif kind_of_entry == "file":
            files.append(path)
        elif kind_of_entry == "other":
            raise _unsafe(f"{name!r} is a device or FIFO, not a file")
        total += size
        if total > max_unpacked_bytes:
            raise PayloadTooLarge(
                f"the bundle unpacks to more than {max_unpacked_bytes} bytes",
                limit=max_unpacked_bytes,
            )
    return Inspected(format=kind, files=sorted(set(files)), unpacked_bytes=total)


Entry = tuple[str, str, int, str]  # name, file | dir | symlink | hardlink | other, size, target


def _zip_entries(data: bytes) -> Iterator[Entry]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                target = archive.read(info).decode("utf-8", errors="replace")
                yield info.filename, "symlink", 0, target
            elif info.is_dir():
                yield info.filename, "dir", 0, ""
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # zips often set no type bits
                yield info.filename, "other", 0, ""
            else:
                yield info.filename, "file", info.file_size, ""


def _tar_entries(data: bytes, kind: Format) -> Iterator[Entry]:
    """Lazily, so that a gzip bomb stops at the size limit instead of being unpacked whole."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz" if kind == "tar.gz" else "r:") as tar:
        for member in tar:  # streams: a member's header is read, not its data
            if member.issym():
                yield member.name, "symlink", 0, member.linkname
            elif member.islnk():
                yield member.name, "hardlink", 0, member.linkname
            elif member.isdir():
                yield member.name, "dir", 0, ""
            elif member.isreg():
                yield member.name, "file", member.size, ""
            else:
                yield member.name, "other", 0, ""


def _clean(name: str) -> str:
    """The entry's path relative to the bundle root, or 400 when it could leave it."""
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or name.startswith("/")
        or (len(name) > 1 and name[1] == ":")
    ):
        raise _unsafe(f"entry {name!r} is not a relative path inside the bundle")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _unsafe(f"entry {name!r} steps out of the bundle with '..'")
    return "/".join(parts)


def _inside(target: str, name: str, shown: str) -> None:
    if target.startswith("/") or "\\" in target:
        raise _unsafe(f"link {name!r} points outside the bundle ({shown!r})")
    normal = posixpath.normpath(target)
    if normal == ".." or normal.startswith("../"):
        raise _unsafe(f"link {name!r} points outside the bundle ({shown!r})")


def _unsafe(detail: str) -> BadRequest:
    return BadRequest(detail, code="bundle_unsafe")
