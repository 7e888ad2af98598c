"""Zip and tar bundles built in memory, benign and malicious, for tests."""

import io
import stat
import tarfile
import zipfile


def zip_of(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A zip of ``files`` and symbolic ``links`` (name -> target)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def tar_of(
    files: dict[str, bytes],
    *,
    gzip: bool = True,
    symlinks: dict[str, str] | None = None,
    hardlinks: dict[str, str] | None = None,
    fifos: tuple[str, ...] = (),
) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gzip else "w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        for kind, links in ((tarfile.SYMTYPE, symlinks), (tarfile.LNKTYPE, hardlinks)):
            for name, target in (links or {}).items():
                info = tarfile.TarInfo(name)
                info.type = kind
                info.linkname = target
                archive.addfile(info)
        for name in fifos:
            info = tarfile.TarInfo(name)
            info.type = tarfile.FIFOTYPE
            archive.addfile(info)
    return buffer.getvalue()


def zip_bomb(declared_bytes: int) -> bytes:
    """A small zip of one file of zeros that unpacks to ``declared_bytes``."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("zeros.bin", "w", force_zip64=True) as handle,
    ):
        block = bytes(1 << 20)
        for _ in range(declared_bytes >> 20):
            handle.write(block)
    return buffer.getvalue()
