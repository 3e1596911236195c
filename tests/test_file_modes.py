"""Files and directories written through a temporary (atomic writes, atomic directories) get the mode a plain
open() / mkdir() would: 0666 / 0777 less the umask, not mkstemp's 0600 / mkdtemp's 0700."""

import os
import stat

import pytest

from userlm.io import (
    atomic_directory,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    current_umask,
)


@pytest.fixture(params=[0o022, 0o027, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_follow_the_umask(umask, tmp_path):
    assert current_umask() == umask
    atomic_write_text(tmp_path / "report.md", "# report\n")
    atomic_write_json(tmp_path / "metrics.json", {"a": 1})
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    for name in ("report.md", "metrics.json"):
        assert mode(tmp_path / name) == 0o666 & ~umask == mode(plain), name
    assert (tmp_path / "report.md").read_text() == "# report\n"
    atomic_write_text(tmp_path / "report.md", "again\n")  # replacing keeps the umask's mode too
    assert mode(tmp_path / "report.md") == 0o666 & ~umask


def test_atomic_directories_follow_the_umask(umask, tmp_path):
    with atomic_directory(tmp_path / "out") as scratch:
        atomic_write_json(scratch / "manifest.json", {"kind": "userlm-test"})
    assert mode(tmp_path / "out") == 0o777 & ~umask
    assert mode(tmp_path / "out" / "manifest.json") == 0o666 & ~umask


def test_a_failed_write_leaves_no_temporary(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "x.txt", "not bytes")
    assert list(tmp_path.iterdir()) == []
