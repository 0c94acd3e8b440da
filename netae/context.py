"""Cross-flow context: what a flow's source host, host pair and service did before it.

Placeholder until the context stage lands: returns no columns.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from netae.config import ContextSettings
from netae.tables import FlowTable, PacketTable

__all__ = ["compute_context"]


def compute_context(
    packets: PacketTable, flows: FlowTable, *, settings: ContextSettings
) -> dict[str, npt.NDArray[np.float32]]:
    """Per-flow context columns (n_flows each), from flows that started before each flow."""
    return {}
