"""Property tests: mutated sample captures never make netae raise anything but a NetaeError.

The mutations (bit flips, boundary values, cuts, splices of two captures, duplicated and
deleted chunks, gzip wrappers) come from tests/helpers/mutate.py; bench/fuzz.py runs the same
strategy for 10,000 cases.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from netae.cli import app
from netae.config import Settings
from netae.errors import EXIT_INTERNAL, NetaeError
from netae.modelfile import ModelFile, load_model
from tests.helpers.mutate import N_OPS, apply_ops, run_pipeline, seeds

ops_strategy = st.lists(
    st.tuples(st.integers(0, N_OPS - 1), st.integers(0, 1 << 20), st.integers(0, 1 << 16), st.integers(0, 1 << 16)),
    min_size=1,
    max_size=4,
)
seed_strategy = st.integers(0, len(seeds()) - 1)


@pytest.fixture(scope="module")
def model(small_model: Path) -> ModelFile:
    return load_model(small_model)


@pytest.fixture(scope="module")
def scratch() -> Path:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)  # type: ignore[misc]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=seed_strategy, ops=ops_strategy, score=st.booleans())
def test_mutated_captures_raise_only_netae_errors(model, scratch, seed, ops, score):
    data = apply_ops(seed, ops)
    with contextlib.suppress(NetaeError):  # anything else fails the test
        run_pipeline(data, scratch=scratch / "case.pcap", settings=Settings(), model=model if score else None,
                     stream=score)  # fmt: skip


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=seed_strategy, ops=ops_strategy)
def test_cli_never_exits_internal_error_on_mutated_captures(small_model, scratch, seed, ops):
    path = scratch / "cli.pcap"
    path.write_bytes(apply_ops(seed, ops))
    r = CliRunner().invoke(app, ["score", str(path), "-m", str(small_model), "-f", "jsonl", "-q"])
    assert r.exit_code != EXIT_INTERNAL, r.stderr
    assert r.exit_code in (0, 1, 2), r.stderr
    assert "Traceback" not in r.stderr


def test_seeds_are_valid_captures(scratch):
    for i, data in enumerate(seeds()):
        assert run_pipeline(data, scratch=scratch / f"seed{i}.pcap", settings=Settings()) > 10
