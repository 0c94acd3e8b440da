from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from netae import pipeline
from netae.config import Settings

SAMPLE = Path(__file__).resolve().parents[1] / "sample_pcaps" / "mixed.pcap"


@pytest.mark.parametrize("chunk_bytes", [4096, 65536, 1 << 20])
def test_chunked_featurize_equals_one_pass(chunk_bytes):
    whole = pipeline.featurize_files([str(SAMPLE)], settings=Settings())
    parts = pipeline.featurize_files([str(SAMPLE)], settings=Settings(), chunk_bytes=chunk_bytes)
    assert parts.flows.n_flows == whole.flows.n_flows > 2000
    for name, col in whole.flows.column_dict().items():
        np.testing.assert_array_equal(getattr(parts.flows, name), col, err_msg=name)
    np.testing.assert_array_equal(parts.features.offsets, whole.features.offsets)
    np.testing.assert_allclose(parts.features.values, whole.features.values, rtol=1e-6, atol=1e-6)
