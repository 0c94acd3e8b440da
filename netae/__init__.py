"""netae: learn normal network traffic from packet captures and flag the flows that do not fit."""

from __future__ import annotations

import os
import tempfile

__version__ = "0.1.0"


def _writable_dir(path: str) -> bool:
    """True when ``path`` exists or can be made, and a file can be written in it (numba's test)."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def ensure_numba_cache_dir() -> str | None:
    """Point numba's cache at a temporary folder when neither of its own places is writable.

    The compiled kernels are cached (``cache=True``) beside their modules, or else under the
    user's cache folder; where neither is writable (a read-only install run by a service
    account without a home, as cron jobs in containers often are) numba refuses to import them
    at all. Then ``NUMBA_CACHE_DIR`` is set to a per-user folder in the temporary directory,
    before anything imports numba. Returns the folder it set, or None.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    in_tree = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")
    user = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "numba")
    if _writable_dir(in_tree) or _writable_dir(user):
        return None
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = os.path.join(tempfile.gettempdir(), f"netae-numba-cache-{uid}")
    os.environ["NUMBA_CACHE_DIR"] = path
    return path


ensure_numba_cache_dir()
