"""Bundle archives (DESIGN §7): every entry must stay inside the bundle root; bombs stop at
the size limit."""

from typing import Any

import pytest

from runyard.pipelines.archives import inspect
from runyard.problems import BadRequest, PayloadTooLarge
from tests.bundle_support import tar_of, zip_bomb, zip_of

LIMIT = 10 * 1024 * 1024
CODE = {"steps/__init__.py": b"", "steps/tasks.py": b"def run(ctx, input):\n    return 1\n"}


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (zip_of(CODE, links={"steps/latest.py": "tasks.py"}), "zip"),
        (tar_of(CODE, symlinks={"steps/latest.py": "tasks.py"}), "tar.gz"),
        (tar_of({"./" + k: v for k, v in CODE.items()}, gzip=False), "tar"),
    ],
)
def test_a_clean_bundle_lists_its_files(data: bytes, kind: str) -> None:
    checked = inspect(data, max_unpacked_bytes=LIMIT)
    assert checked.format == kind
    assert checked.files == ["steps/__init__.py", "steps/tasks.py"]
    assert checked.unpacked_bytes == len(CODE["steps/tasks.py"])


UNSAFE: list[tuple[str, Any]] = [
    ("dot-dot", zip_of({"../evil.py": b"x"})),
    ("nested dot-dot", tar_of({"steps/../../evil.py": b"x"})),
    ("absolute", tar_of({"/etc/cron.d/evil": b"x"})),
    ("backslash", zip_of({"..\\evil.py": b"x"})),
    ("drive letter", zip_of({"C:/evil.py": b"x"})),
    ("symlink out", tar_of({}, symlinks={"steps/passwd": "../../etc/passwd"})),
    ("absolute symlink", zip_of({}, links={"passwd": "/etc/passwd"})),
    ("hardlink out", tar_of({}, hardlinks={"passwd": "../etc/passwd"})),
    ("fifo", tar_of({}, fifos=("pipe",))),
]


@pytest.mark.parametrize(("case", "data"), UNSAFE, ids=[case for case, _ in UNSAFE])
def test_entries_that_leave_the_root_are_refused(case: str, data: bytes) -> None:
    with pytest.raises(BadRequest) as refused:
        inspect(data, max_unpacked_bytes=LIMIT)
    assert refused.value.code == "bundle_unsafe", case


def test_damaged_or_foreign_data_is_invalid() -> None:
    for data in (b"just text", zip_of(CODE)[:40], tar_of(CODE)[:30]):
        with pytest.raises(BadRequest) as refused:
            inspect(data, max_unpacked_bytes=LIMIT)
        assert refused.value.code == "bundle_invalid"


def test_bombs_stop_at_the_unpacked_limit() -> None:
    bomb = zip_bomb(64 << 20)
    assert len(bomb) < 200_000  # 64 MiB of zeros, small on the wire
    with pytest.raises(PayloadTooLarge):
        inspect(bomb, max_unpacked_bytes=LIMIT)
    big = tar_of({"a.bin": bytes(6 << 20), "b.bin": bytes(6 << 20)})
    with pytest.raises(PayloadTooLarge):
        inspect(big, max_unpacked_bytes=LIMIT)
