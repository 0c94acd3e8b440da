"""Synthetic feature sequences for model, training and scoring tests."""

from __future__ import annotations

import numpy as np

from netae.tables import Features


def synthetic_features(n_flows: int = 60, n_features: int = 4, seed: int = 0, max_len: int = 12) -> Features:
    """Flows of a few kinds, each a smooth per-packet pattern plus noise."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_len + 1, n_flows).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flow = np.repeat(np.arange(n_flows), lengths)
    pos = np.arange(offsets[-1]) - offsets[flow]
    kind = rng.integers(0, 3, n_flows)[flow]
    base = rng.normal(size=(3, n_features))
    values = base[kind] + 0.5 * np.sin(pos[:, None] * (0.5 + 0.2 * np.arange(n_features)))
    values += 0.05 * rng.normal(size=values.shape)
    return Features(values=values.astype(np.float32), offsets=offsets, names=tuple(f"f{i}" for i in range(n_features)))
