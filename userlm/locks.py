"""One writer per output directory: an OS file lock (fcntl.flock) held while a command writes there, released
by the OS when the process exits or is killed, so a crash never leaves a stale lock behind."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from userlm.io import UserError

_held: dict[Path, int] = {}  # lock files this process holds -> nesting depth (a stage inside another is fine)


def lock_file(path: str | Path) -> Path:
    """`.NAME.lock` next to the directory (not in it: `data prepare` replaces the directory as a whole)."""
    real = Path(os.path.realpath(path))
    return real.parent / f".{real.name}.lock"


@contextmanager
def locked(path: str | Path, what: str = "output directory") -> Iterator[None]:
    """Hold the lock of directory `path`; another process holding it is a one-line UserError naming its pid."""
    lock = lock_file(path)
    if lock in _held:
        _held[lock] += 1
        try:
            yield
        finally:
            _held[lock] -= 1
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(f"{path}: another userlm process (pid {holder}) is writing it; wait for it to finish, "
                            f"or choose another {what}") from None
        try:  # a holder that released it between our open and flock has unlinked that file: lock the new one
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[lock] = 1
    try:
        yield
    finally:
        if _held.pop(lock, 0):
            try:
                os.unlink(lock)  # before unlocking, so no one locks a file that is about to vanish
            except FileNotFoundError:
                pass
        os.close(fd)
