"""The environments' directories on this server's disk: which are in use by running steps,
which exist, and deleting those no longer wanted (never one in use)."""

import asyncio
import contextlib
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path


class EnvironmentDisk:
    def __init__(self, root: Path) -> None:
        self.root = root  # <root>/<key>/<build id>
        self.in_use: Counter[str] = Counter()  # environment path -> steps using it

    @contextlib.contextmanager
    def using(self, path: Path) -> Iterator[None]:
        """Mark the environment at ``path`` in use meanwhile: it is not deleted."""
        key = str(path)
        self.in_use[key] += 1
        try:
            yield
        finally:
            self.in_use[key] -= 1
            if self.in_use[key] <= 0:
                del self.in_use[key]

    async def directories(self) -> list[str]:
        """Every environment directory there is."""

        def listed() -> list[str]:
            if not self.root.is_dir():
                return []
            return [str(b) for key in self.root.iterdir() if key.is_dir() for b in key.iterdir()]

        return await asyncio.to_thread(listed)

    async def remove(self, paths: list[str]) -> None:
        """Delete these directories (and their key's, once empty), but those in use."""
        for path in paths:
            if path not in self.in_use:
                await asyncio.to_thread(shutil.rmtree, path, True)
                with contextlib.suppress(OSError):
                    Path(path).parent.rmdir()
