"""netae: learn normal network traffic from packet captures and flag the flows that do not fit.

Importing the package has no side effects: no folder is made and no environment variable is
set (the numba cache is chosen by ``netae.jit`` when a kernel is first needed).
"""

from __future__ import annotations

__version__ = "0.1.0"
