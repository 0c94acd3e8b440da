"""File helpers at the bottom of the package: atomic writes of regular files, in-place writes of others.

Every file netae writes (model files, Parquet shards, reports, scored output) goes through
``atomic_write``: a temporary file beside the target, fsync, then a rename, so a reader never sees
a partial file and a failed run leaves the old one in place. Any stage may import this module; it
imports nothing of netae but the errors.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from netae.errors import OutputError, printable

__all__ = ["atomic_write", "in_place", "target_kind"]


def target_kind(target: Path) -> str:
    """``stdout`` (``-``), ``missing``, ``regular``, ``directory`` or ``special`` (FIFO, device, socket)."""
    if str(target) == "-":
        return "stdout"
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        raise OutputError(f"cannot write {printable(target)}: {exc.strerror}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"cannot write {printable(target)}: it is a directory; give a file name")
    return "regular" if stat.S_ISREG(st.st_mode) else "special"


@contextlib.contextmanager
def _stdout(binary: bool) -> Iterator[IO[Any]]:
    fh: IO[Any] = sys.stdout.buffer if binary else sys.stdout
    yield fh
    fh.flush()


@contextlib.contextmanager
def in_place(target: Path, *, binary: bool) -> Iterator[IO[Any]]:
    """Write a FIFO, character device or socket where it is: never replace it with a file."""
    try:
        if stat.S_ISSOCK(os.stat(target).st_mode):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(target))
            raw: IO[Any] = sock.makefile("wb")
            sock.close()  # the file object keeps the connection open
        else:
            raw = open(target, "wb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise OutputError(f"cannot write {printable(target)}: {exc.strerror}") from exc
    with raw:
        yield raw if binary else io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="",
                                                  write_through=True)  # fmt: skip


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, binary: bool = False) -> Iterator[IO[Any]]:
    """Write a regular file atomically: a temporary file beside ``path``, fsync, then rename.

    On any exception (SIGTERM and SIGINT included, see ``cli``) the temporary file is removed and
    ``path`` is untouched. Anything but a regular file is written in place, never replaced:
    ``-`` is standard output; a FIFO, character device or socket is opened as it is.
    """
    target = Path(path)
    kind = target_kind(target)
    if kind == "stdout":
        with _stdout(binary) as out:
            yield out
        return
    if kind == "special":
        with in_place(target, binary=binary) as out:
            yield out
        return
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError(f"cannot write {printable(target)}: directory {printable(directory)} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OutputError(f"cannot write in {printable(directory)}: {exc.strerror}") from exc
    try:
        opened: IO[Any] = (
            os.fdopen(fd, "wb")
            if binary
            # surrogateescape: a name that is not UTF-8 goes out as its own bytes, never a crash
            else os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="")
        )
        with opened as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            with contextlib.suppress(OSError):
                os.chmod(tmp, target.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {printable(target)}: {exc.strerror or exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
