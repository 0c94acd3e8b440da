"""Optional dependencies: which extra brings each, and one clear error when it is missing.

``pip install netae`` is the scorer (numpy, numba, safetensors, typer, rich). Training and the
PyTorch engine need ``netae[train]`` (torch); Parquet feature files need ``netae[parquet]``
(pyarrow). A command that needs a missing one stops with ``MissingExtra`` (exit 2) and a line
saying what to install, never an ImportError traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from netae.errors import MissingExtra

__all__ = ["EXTRAS", "available", "require"]

# module -> (extra, what it is for)
EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("train", "training and the PyTorch engine (--engine torch, --device cuda)"),
    "pyarrow": ("parquet", "Parquet feature files and datasets"),
}


def available(module: str) -> bool:
    """True when ``module`` can be imported (found on the path; nothing is imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, purpose: str | None = None) -> ModuleType:
    """Import ``module``, or raise ``MissingExtra`` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra, what = EXTRAS.get(module, (None, module))
        hint = f"pip install 'netae[{extra}]'" if extra else f"pip install {module}"
        raise MissingExtra(f"{purpose or what} needs {module}, which is not installed here: {hint}") from exc
