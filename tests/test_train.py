from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from netae.config import FlowSettings, ModelSettings, Settings, TrainSettings
from netae.errors import InputError
from netae.score import score_features
from netae.train import EpochStats, train_model
from tests.helpers.synthetic import synthetic_features


def _settings(**train) -> Settings:
    base = {"epochs": 3, "batch_size": 16, "patience": 10, "seed": 0, "device": "cpu", "threads": 1}
    return Settings(
        model=ModelSettings(hidden_size=8), flows=FlowSettings(max_packets=8), train=TrainSettings(**{**base, **train})
    ).check()


def test_same_seed_same_weights_and_scores():
    features = synthetic_features()
    is_val = np.arange(features.n_flows) % 5 == 0
    a = train_model(features, is_val=is_val, settings=_settings())
    b = train_model(features, is_val=is_val, settings=_settings())
    assert a.weights.keys() == b.weights.keys()
    for name in a.weights:
        assert np.array_equal(a.weights[name], b.weights[name])
    sa = score_features(a.weights, features, settings=_settings(), device="cpu")
    sb = score_features(b.weights, features, settings=_settings(), device="cpu")
    assert np.array_equal(sa.score, sb.score)
    c = train_model(features, is_val=is_val, settings=_settings(seed=1))
    assert not np.array_equal(a.weights["output.weight"], c.weights["output.weight"])


def test_tiny_batch_can_be_overfit():
    features = synthetic_features(n_flows=4, max_len=6)
    settings = _settings(epochs=300, learning_rate=1e-2, batch_size=4)
    result = train_model(features, is_val=np.zeros(4, np.bool_), settings=settings)
    first, best = result.history[0].train_loss, min(s.train_loss for s in result.history)
    assert best < first / 20


def test_history_callback_and_early_stopping():
    features = synthetic_features()
    seen: list[EpochStats] = []
    result = train_model(
        features, is_val=np.arange(features.n_flows) % 4 == 0, settings=_settings(epochs=4), on_epoch=seen.append
    )
    assert tuple(seen) == result.history
    assert [s.epoch for s in seen] == list(range(1, len(seen) + 1))
    assert all(s.n_epochs == 4 and s.packets_per_s > 0 and np.isfinite(s.val_loss) for s in seen)
    best = min(seen, key=lambda s: s.val_loss)
    assert result.best_epoch == best.epoch
    assert best.is_best
    assert result.device == "cpu"
    assert result.input_path == "padded"


def test_early_stopping_keeps_best_weights():
    features = synthetic_features()
    is_val = np.arange(features.n_flows) % 4 == 0
    # A huge learning rate makes the loss bounce; patience 1 stops at the first non-improvement.
    # One window per flow (max_packets >= every length), so packet errors sum to the val loss.
    settings = dataclasses.replace(
        _settings(epochs=30, patience=1, learning_rate=0.5), flows=FlowSettings(max_packets=16)
    )
    result = train_model(features, is_val=is_val, settings=settings)
    assert len(result.history) < 30
    assert result.history[-1].epoch - result.best_epoch == 1
    scores = score_features(result.weights, features, settings=settings, device="cpu")
    val_loss = float(np.sum(scores.packet_error[np.repeat(is_val, features.lengths)]) / features.lengths[is_val].sum())
    assert val_loss == pytest.approx(result.history[result.best_epoch - 1].val_loss, rel=1e-4)


def test_without_validation_flows_uses_training_loss():
    features = synthetic_features()
    result = train_model(features, is_val=np.zeros(features.n_flows, np.bool_), settings=_settings())
    assert all(np.isnan(s.val_loss) for s in result.history)
    assert result.best_epoch >= 1


def test_all_flows_held_out_is_an_input_error():
    features = synthetic_features(n_flows=5)
    with pytest.raises(InputError):
        train_model(features, is_val=np.ones(5, np.bool_), settings=_settings())


@pytest.mark.parametrize("input_path", ["packed", "padded"])
def test_both_input_paths_train(input_path):
    features = synthetic_features()
    settings = dataclasses.replace(_settings(), model=ModelSettings(hidden_size=8, input_path=input_path))
    result = train_model(features, is_val=np.arange(features.n_flows) % 5 == 0, settings=settings)
    assert result.input_path == input_path
    assert result.history[-1].train_loss < result.history[0].train_loss
