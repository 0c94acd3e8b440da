"""Scaling out: streaming training from sharded datasets, and DDP under torchrun (gloo, 2 ranks).

The streaming tests run in-process; the torchrun test is marked ``distributed`` and launches
``python -m torch.distributed.run --nproc-per-node 2 -m netae train`` on the sample captures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netae.config import load_settings
from netae.evaluate import evaluate_scores, match_labels, read_labels
from netae.modelfile import load_model
from netae.pipeline import expand_inputs
from netae.workflow import featurize_to, score_captures, train_captures

ROOT = Path(__file__).resolve().parents[1]
NORMAL = ROOT / "sample_pcaps" / "normal"
MIXED = ROOT / "sample_pcaps" / "mixed.pcap"
LABELS = ROOT / "sample_pcaps" / "mixed_labels.csv"
CONFIG = """
[model]
hidden_size = 16
[train]
epochs = 3
batch_size = 32
seed = 0
device = "cpu"
threads = 1
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "small.toml"
    path.write_text(CONFIG)
    return path


def _same_model(a: Path, b: Path) -> None:
    """Equal up to float rounding: shards are featurized as flows close, and the windowed context
    sums (cumulative-sum differences) then round differently in the last bits."""
    ma, mb = load_model(a), load_model(b)
    assert ma.weights.keys() == mb.weights.keys()
    for name in ma.weights:
        np.testing.assert_allclose(ma.weights[name], mb.weights[name], rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(ma.scaler.mean_, mb.scaler.mean_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ma.scaler.scale_, mb.scaler.scale_, rtol=1e-5, atol=1e-6)
    assert ma.threshold.strategy == mb.threshold.strategy
    assert ma.threshold.value_ == pytest.approx(mb.threshold.value_, rel=1e-4)


def _auc(model: Path) -> tuple[np.ndarray, float]:
    run = score_captures([str(MIXED)], model_path=model, device="cpu")
    matched = match_labels(run.table, read_labels(LABELS))
    return run.table.score, evaluate_scores(run.table.score, matched, threshold=run.table.threshold).roc_auc


def test_streamed_dataset_equals_training_from_the_capture(tmp_path, config):
    settings = load_settings(config)
    capture = str(NORMAL / "office_b.pcapng")
    featurize_to([capture], tmp_path / "ds", settings=settings)
    train_captures([capture], output=tmp_path / "cap.netae", settings=settings)
    # A cap that holds the dataset: loaded once, the in-memory algorithm, the same model.
    train_captures([str(tmp_path / "ds")], output=tmp_path / "ds.netae", settings=settings, shard_buffer_mb=64)
    _same_model(tmp_path / "cap.netae", tmp_path / "ds.netae")


def test_dataset_larger_than_the_shard_buffer(tmp_path, config):
    settings = load_settings(config)
    captures = sorted(str(p) for p in NORMAL.iterdir())
    featurize_to(captures, tmp_path / "ds", settings=settings)
    ds = str(tmp_path / "ds")
    sizes = [p.stat().st_size for p in (tmp_path / "ds").glob("*.parquet")]
    assert len(sizes) == 2
    whole = train_captures([ds], output=tmp_path / "whole.netae", settings=settings)
    # Exactly as in memory (the old path concatenated every shard) while the cap holds them all.
    fits = train_captures([ds], output=tmp_path / "fits.netae", settings=settings, shard_buffer_mb=1024)
    _same_model(tmp_path / "whole.netae", tmp_path / "fits.netae")
    # A cap below the dataset's size: one shard per buffer load.
    small = train_captures([ds], output=tmp_path / "small.netae", settings=settings, shard_buffer_mb=0.5)
    assert 0 < small.max_buffer_bytes <= max(small.shard_bytes)
    assert small.max_buffer_bytes < sum(small.shard_bytes) > 0.5 * 2**20
    assert fits.max_buffer_bytes >= sum(fits.shard_bytes)
    assert small.model.training.flows == whole.model.training.flows
    assert small.model.training.val_flows == whole.model.training.val_flows
    s_whole, auc_whole = _auc(tmp_path / "whole.netae")
    s_small, auc_small = _auc(tmp_path / "small.netae")
    assert np.corrcoef(np.log(s_whole), np.log(s_small))[0, 1] > 0.95
    assert auc_small > auc_whole - 0.05
    # Shards made by separate jobs: a directory without a manifest reads its *.parquet by name.
    (tmp_path / "ds" / "manifest.json").unlink()
    train_captures([ds], output=tmp_path / "loose.netae", settings=settings)
    _same_model(tmp_path / "whole.netae", tmp_path / "loose.netae")


def _gloo_available() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_gloo_available()


@pytest.mark.distributed
@pytest.mark.skipif(not _gloo_available(), reason="torch.distributed with gloo is not available")
def test_torchrun_two_ranks_match_one_process(tmp_path, config):
    single = tmp_path / "single.netae"
    train_captures(expand_inputs([str(NORMAL)]), output=single, settings=load_settings(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "netae", "train", str(NORMAL), "-o", str(tmp_path / "ddp.netae"), "-c", str(config)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Rank 0 alone reports: one summary line.
    assert proc.stderr.count("trained on") == 1
    assert "x 2 ranks" in proc.stderr
    a, b = load_model(single), load_model(tmp_path / "ddp.netae")
    assert b.training.ranks == 2
    # The same global batches, split across ranks: equal up to float summation order.
    for name in a.weights:
        np.testing.assert_allclose(a.weights[name], b.weights[name], rtol=1e-3, atol=1e-4)
    s_a, _ = _auc(single)
    s_b, _ = _auc(tmp_path / "ddp.netae")
    np.testing.assert_allclose(s_a, s_b, rtol=1e-3, atol=1e-5)
    assert a.threshold.value_ == pytest.approx(b.threshold.value_, rel=1e-3)
