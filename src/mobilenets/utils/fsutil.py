"""Crash-safe file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and rename it over ``path``.

    On any error (a full disk included) the temporary file is removed and ``path`` is untouched.
    """
    dst = Path(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a file we write should look like any other
        os.replace(tmp_path, dst)
        _fsync_dir(dst.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """``write(tmp_path)`` then atomically move the result to ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    def write(p: Path) -> None:
        p.write_text(text, encoding="utf-8")
    atomic_write(path, write)


def create_dir_atomically(path: str | os.PathLike[str], files: dict[str, str]) -> None:
    """Create folder ``path`` holding ``files`` (name -> text) so that it never exists without them.

    The folder is assembled under a temporary name and renamed into place. If ``path`` already
    exists, the files are (atomically) rewritten in it instead.
    """
    dst = Path(path)
    if not dst.is_dir():
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
        try:
            for name, text in files.items():
                with open(tmp / name, "w", encoding="utf-8") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
            os.rename(tmp, dst)  # replaces nothing but an empty folder
            _fsync_dir(dst.parent)
            return
        except OSError:
            if not dst.is_dir():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    for name, text in files.items():
        atomic_write_text(dst / name, text)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
