"""Files that never lie: atomic writes, append-only JSONL, readers that name the bad line."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator


class UserError(Exception):
    """A problem with the user's input; the CLI prints it as one line, without a traceback."""


def current_umask() -> int:
    """The process's umask, read without changing it where /proc says it (os.umask can only be read by
    setting it, which races with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write through a temporary file in the same directory, then rename over `path`. mkstemp creates the
    file 0600; it is given the mode a plain open() would (0666 less the umask), so a report copied to a
    shared folder stays readable as the umask allows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


# `--overwrite` sets this for the command it is given to: replace output this project wrote though it is of
# another kind (or start a run over); never a directory or file this project did not write.
overwrite_allowed: ContextVar[bool] = ContextVar("overwrite_allowed", default=False)


# Written first into a directory a command fills in place (`train`), so `--resume` can tell it is ours.
IN_PROGRESS = "userlm_in_progress.json"


def userlm_kind(path: str | Path) -> str | None:
    """What this project wrote in directory `path` (its manifest's `kind`), or None if it did not write it."""
    path = Path(path)
    for name in ("manifest.json", "userlm_source.json", "run.json", IN_PROGRESS):
        try:
            obj = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if not isinstance(obj, dict):
            continue
        if str(obj.get("kind", "")).startswith("userlm-"):
            return obj["kind"]
        if name == "userlm_source.json":
            return "userlm-model-cache"
        if name == "run.json" and "identity" in obj and "config" in obj:
            return "userlm-simulation-run"
    return None


def written_by_userlm(path: str | Path) -> bool:
    return userlm_kind(path) is not None


def check_replaceable(path: str | Path, what: str = "output directory", kind: str | None = None) -> None:
    """Refuse (one line) to replace anything but a missing or empty directory or one this project wrote (of
    the same `kind`, when given); `--overwrite` lifts only the last rule: a directory holding files this
    project did not write (a home folder, a folder of your files) is never replaced, whatever the flags."""
    path = Path(path)
    resolved = path.resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents or resolved == resolved.parent:
        raise UserError(f"{path}: refusing to replace the working directory or one above it; choose a new {what}")
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        kind_of = "a symbolic link" if path.is_symlink() else "not a directory"
        raise UserError(f"{path}: exists and is {kind_of}; refusing to replace it, choose another {what}")
    if (path / ".git").exists():
        raise UserError(f"{path}: holds a .git folder; refusing to replace it, choose another {what}")
    if not any(path.iterdir()):
        return
    existing = userlm_kind(path)
    if existing is None:
        raise UserError(f"{path}: exists and was not written by userlm (no userlm manifest.json); refusing to "
                        f"replace it, even with --overwrite: choose another {what}")
    if kind is not None and existing != kind and not overwrite_allowed.get():
        raise UserError(f"{path}: holds a {existing} written by userlm, not a {kind}; choose another {what}, "
                        f"or pass --overwrite to replace it")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_partials(path: str | Path) -> list[Path]:
    """Remove `.NAME.partial-PID-*` scratch directories left by killed runs (their process is gone)."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.partial-*"):
        m = re.fullmatch(rf"\.{re.escape(path.name)}\.partial-(\d+)-\w+", tmp.name)
        if tmp.is_dir() and not tmp.is_symlink() and (m is None or not _pid_alive(int(m.group(1)))):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


@contextmanager
def atomic_directory(path: str | Path, kind: str | None = None) -> Iterator[Path]:
    """Yield a scratch directory that replaces `path` only if the block finishes.

    `path` must be missing, empty, or a directory this project wrote, of the same kind as the one written
    (see `check_replaceable`); scratch directories of killed runs are removed first."""
    path = Path(path)
    check_replaceable(path, kind=kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_partials(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.partial-{os.getpid()}-"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it 0700; give it a plain mkdir's mode
    old = None
    if path.exists():
        check_replaceable(path, kind=kind or userlm_kind(tmp))  # again, knowing what we wrote
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.partial-{os.getpid()}-old"))
        os.replace(path, old / "old")
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one record durably, so a killed run keeps every finished line."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _line_of(data: bytes | str, offset: int) -> int:
    return data.count(b"\n" if isinstance(data, bytes) else "\n", 0, offset) + 1


def read_json(path: str | Path, what: str = "file", required: dict[str, type | tuple] | None = None) -> dict:
    """One JSON object from a file this project wrote (run.json, manifest.json, metrics.json); anything wrong
    with it is a UserError naming file, line and field. `required` maps field names to their types."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a JSON {what}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}:{_line_of(data, e.start)}: {what} is not UTF-8 text") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: {what} is not valid JSON ({e.msg})") from None
    except RecursionError:
        raise UserError(f"{path}:1: {what} is nested too deeply") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}:1: {what} must be a JSON object, got {type(obj).__name__}")
    return require_fields(path, what, obj, required or {})


def require_fields(path: str | Path, what: str, obj: dict, required: dict[str, type | tuple]) -> dict:
    """`obj` (read from `path`) when it has each field of `required` with its type (a bool is not an int unless
    named), else a UserError naming file and field."""
    for name, kind in required.items():
        if name not in obj:
            raise UserError(f"{path}: {what} field '{name}' is missing")
        if not isinstance(obj[name], kind) or (isinstance(obj[name], bool) and bool not in (
                kind if isinstance(kind, tuple) else (kind,))):
            names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise UserError(f"{path}: {what} field '{name}' must be {names}, got {type(obj[name]).__name__}")
    return obj


def read_jsonl(path: str | Path, *, tolerate_torn_tail: bool = False) -> Iterator[dict]:
    """Yield records; a bad line (not UTF-8, not JSON, not an object) is a UserError naming file and line.

    With `tolerate_torn_tail`, an unterminated last line (a write cut off by a kill) is dropped instead.
    """
    path = Path(path)
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a JSONL file") from None
    for index, raw in enumerate(lines):
        number = index + 1
        if not raw.strip():
            continue
        torn = tolerate_torn_tail and index == len(lines) - 1  # no newline after it
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            if torn:
                return
            raise UserError(f"{path}:{number}: not UTF-8 text (byte {e.start + 1} of the line)") from None
        except json.JSONDecodeError as e:
            if torn:
                return
            raise UserError(f"{path}:{number}: invalid JSON ({e.msg})") from None
        except RecursionError:
            raise UserError(f"{path}:{number}: JSON nested too deeply") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield record


def truncate_torn_tail(path: str | Path) -> None:
    """Cut an unterminated last line left by a killed writer, so appends start on a clean line."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str | bytes) -> str:
    return hashlib.sha256(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()


def sha256_json(obj: Any) -> str:
    return sha256_text(json.dumps(obj, sort_keys=True, default=str))


def stable_uint(key: str, nbytes: int) -> int:
    """The first `nbytes` of sha256(key) as an unsigned integer: a draw that depends on the key alone (not on
    the order, sample or process that asks), for seeded splits, shares and per-conversation seeds."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:nbytes], "big")


def seeded_fraction(key: str) -> float:
    """A uniform draw in [0, 1) that depends on `key` alone."""
    return stable_uint(key, 8) / 2**64


def cache_dir() -> Path:
    """Where derived artifacts (dequantized models, classifiers, embeddings) are kept between runs."""
    root = os.environ.get("USERLM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "userlm"
    )
    return Path(root)


def writable_cache_dir() -> Path:
    """cache_dir(), created, after checking that files can be written in it: called before work whose result
    goes there (a GGUF's conversion, the vector store), so a read-only USERLM_CACHE fails at once, naming it."""
    root = cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=root, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{root}: the userlm cache is not writable ({e.strerror or e}); point USERLM_CACHE at a "
                        f"writable folder") from None
    return root
