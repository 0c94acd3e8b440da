"""File helpers at the bottom of the package: atomic writes and whole-line appends.

Every file netae writes (model files, Parquet shards, reports, scored output) goes through
``atomic_write``: a temporary file beside the target, fsync, then a rename, so a reader never sees
a partial file and a failed run leaves the old one in place. Any stage may import this module; it
imports nothing of netae but the errors.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from netae.errors import OutputError

__all__ = ["LineAppender", "append_lines", "atomic_write"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, binary: bool = False, append: bool = False) -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path``, fsync, then rename over it.

    On any exception the temporary file is removed and ``path`` is untouched. With ``append``
    the existing content is copied first, so a reader never sees a partial line.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError(f"cannot write {target}: directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OutputError(f"cannot write in {directory}: {exc.strerror}") from exc
    try:
        opened: IO[Any] = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")
        with opened as fh:
            if append and target.exists():
                with open(target, "rb") as old:
                    data = old.read()
                if data and not data.endswith(b"\n"):
                    data = data[: data.rfind(b"\n") + 1]  # drop a torn last line, keep whole ones
                if binary:
                    fh.write(data)
                else:
                    fh.write(data.decode("utf-8", errors="replace"))
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            with contextlib.suppress(OSError):
                os.chmod(tmp, target.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class LineAppender:
    """Appends whole lines to a file: each ``write`` is one ``O_APPEND`` write, then fsync.

    ``had_lines`` says whether the file held lines before (a CSV header is then not repeated).
    """

    def __init__(self, fd: int, *, had_lines: bool) -> None:
        self._fd = fd
        self.had_lines = had_lines

    def write(self, text: str) -> None:
        data = memoryview(text.encode("utf-8"))
        while data:
            n = os.write(self._fd, data)
            data = data[n:]

    def flush(self) -> None:
        os.fsync(self._fd)


@contextlib.contextmanager
def append_lines(path: str | os.PathLike[str]) -> Iterator[LineAppender]:
    """Open ``path`` for appending whole lines batch by batch (streaming ``--append``).

    A torn last line left by an earlier killed run is cut off first, so the file only ever holds
    whole lines followed by whole lines.
    """
    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror}") from exc
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(target, "rb") as fh:
                fh.seek(max(0, size - (1 << 20)))
                tail = fh.read()
            if not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n")
                os.ftruncate(fd, size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 1 << 20 else size))
        yield LineAppender(fd, had_lines=os.fstat(fd).st_size > 0)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
