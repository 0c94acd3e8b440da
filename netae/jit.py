"""numba, imported the first time a compiled kernel is needed, with a cache folder it can write.

Every module that compiles a kernel imports numba from here (``from netae.jit import njit``),
never directly: importing ``netae`` itself (``netae --help``) then touches neither numba nor the
file system.

NOTE [numba cache]
The kernels are cached (``cache=True``) beside their modules, or else under the user's cache
folder; where neither is writable (a read-only install run by a service account without a home,
as cron jobs in containers often are) numba refuses to compile them at all. Then the cache goes
to a per-user folder in the temporary directory. ``NUMBA_CACHE_DIR``, when set, always wins. The
choice is made once, when this module is first imported, before any kernel is decorated, and is
written to ``numba.config.CACHE_DIR`` only: the environment is left as it was.
"""

from __future__ import annotations

import os
import tempfile

import numba
from numba import njit, prange

__all__ = ["cache_dir", "choose_cache_dir", "njit", "numba", "prange"]


def _writable_dir(path: str) -> bool:
    """True when ``path`` exists or can be made, and a file can be written in it (numba's test)."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def choose_cache_dir() -> str | None:
    """The folder numba must be told to cache in, or None where its own places will do."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    in_tree = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")
    user = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "numba")
    if _writable_dir(in_tree) or _writable_dir(user):
        return None
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return os.path.join(tempfile.gettempdir(), f"netae-numba-cache-{uid}")


def cache_dir() -> str:
    """Where numba caches compiled kernels now ("" for its own places beside the modules)."""
    return str(numba.config.CACHE_DIR)  # type: ignore[attr-defined]


_chosen = choose_cache_dir()
if _chosen is not None:
    numba.config.CACHE_DIR = _chosen  # type: ignore[attr-defined]
