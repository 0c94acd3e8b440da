"""Where the shared eval captures and corpus are: ``../shared`` beside the checkout, else the
``shared`` directory next to the worktrees' parent (``NETAE_SHARED`` overrides both)."""

from __future__ import annotations

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]


def _find() -> Path:
    env = os.environ.get("NETAE_SHARED")
    if env:
        return Path(env)
    for base in (_ROOT.parent, _ROOT.parent.parent):
        if (base / "shared").is_dir():
            return base / "shared"
    return _ROOT.parent / "shared"


SHARED = _find()
EVAL = SHARED / "eval"
CORPUS = SHARED / "corpus" / "data"
