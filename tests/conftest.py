"""Shared fixtures: one small model per test session for the stream, fault and fuzz tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from netae.cli import app

SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model (3 epochs, hidden 16) trained on the normal sample captures."""
    path = tmp_path_factory.mktemp("small_model") / "small.netae"
    args = ["train", str(SAMPLES / "normal"), "-o", str(path), "--epochs", "3", "--seed", "0"]
    r = CliRunner().invoke(app, [*args, "--hidden-size", "16", "--quiet"])
    assert r.exit_code == 0, r.stderr
    return path
