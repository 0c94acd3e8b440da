from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from netae.config import FlowSettings, ModelSettings, Settings, TrainSettings
from netae.errors import ConfigError
from netae.model import build_model, weights_to_numpy
from netae.score import resolve_device, score_features
from netae.tables import Features
from netae.train import train_model
from tests.helpers.synthetic import synthetic_features


def _settings(max_packets: int = 8, input_path: str = "auto") -> Settings:
    return Settings(
        model=ModelSettings(hidden_size=8, input_path=input_path),
        flows=FlowSettings(max_packets=max_packets),
        train=TrainSettings(threads=1, device="cpu", epochs=5, batch_size=16),
    ).check()


def _random_weights(n_features: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    torch.manual_seed(seed)
    return weights_to_numpy(build_model(n_features, ModelSettings(hidden_size=8)))


def _use_engine(monkeypatch, engine: str) -> None:
    """Make ``auto`` pick ``engine``, as ``netae score --engine`` would."""
    import netae.score as score_mod

    chosen = score_mod.cpu_engine
    monkeypatch.setattr(score_mod, "cpu_engine", lambda choice="auto": chosen(engine if choice == "auto" else choice))


@pytest.fixture(params=["numba", "torch"])
def engine(request, monkeypatch):
    """Runs a test with each CPU engine (NOTE [cpu engine] in infer.py)."""
    _use_engine(monkeypatch, request.param)
    return request.param


@pytest.fixture
def torch_engine(monkeypatch):
    """For tests of the torch path's own options (input paths, batch sizes)."""
    _use_engine(monkeypatch, "torch")


def _features(lengths: list[int], n_features: int = 4, seed: int = 0) -> Features:
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = rng.normal(size=(offsets[-1], n_features)).astype(np.float32)
    return Features(values=values, offsets=offsets, names=tuple(f"f{i}" for i in range(n_features)))


def test_shapes_and_dtypes(engine):
    features = _features([3, 1, 20, 8])
    scores = score_features(_random_weights(), features, settings=_settings(), device="cpu")
    assert scores.score.shape == (4,)
    assert scores.score.dtype == np.float32
    assert scores.packet_error.shape == (32,)
    assert scores.packet_error.dtype == np.float32
    assert scores.feature_error.shape == (4, 4)
    assert scores.feature_error.dtype == np.float32
    assert scores.worst_window.shape == (4,)
    assert scores.worst_window.dtype == np.int64
    assert np.all(scores.packet_error > 0)
    np.testing.assert_allclose(scores.feature_error.mean(1), scores.score, rtol=1e-5)


def test_packed_and_padded_give_the_same_scores(torch_engine):
    features = _features([3, 1, 20, 8, 5, 5, 2])
    weights = _random_weights()
    packed = score_features(weights, features, settings=_settings(input_path="packed"), device="cpu")
    padded = score_features(weights, features, settings=_settings(input_path="padded"), device="cpu")
    np.testing.assert_allclose(packed.score, padded.score, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(packed.packet_error, padded.packet_error, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(packed.feature_error, padded.feature_error, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 1000])
def test_batching_does_not_change_scores(batch_size, torch_engine):
    features = _features([3, 1, 20, 8, 5, 5, 2])
    weights = _random_weights()
    ref = score_features(weights, features, settings=_settings(), device="cpu")
    got = score_features(weights, features, settings=_settings(), device="cpu", batch_size=batch_size)
    np.testing.assert_allclose(got.score, ref.score, rtol=1e-5)
    np.testing.assert_allclose(got.packet_error, ref.packet_error, rtol=1e-5)


def test_long_flow_scored_everywhere_and_takes_its_worst_window(engine):
    # One flow of 10 packets with windows of 4: [0,4), [4,8) and the overlapped last one [6,10).
    long_flow = _features([10], seed=3)
    weights = _random_weights()
    settings = _settings(max_packets=4)
    scores = score_features(weights, long_flow, settings=settings, device="cpu")
    assert np.all(scores.packet_error > 0)

    v = long_flow.values
    parts = Features(
        values=np.concatenate([v[0:4], v[4:8], v[6:10]]),
        offsets=np.array([0, 4, 8, 12], np.int64),
        names=long_flow.names,
    )
    windows = score_features(weights, parts, settings=settings, device="cpu")
    assert scores.score[0] == pytest.approx(windows.score.max(), rel=1e-5)
    assert scores.worst_window[0] == [0, 4, 6][int(np.argmax(windows.score))]
    np.testing.assert_allclose(scores.feature_error[0], windows.feature_error[np.argmax(windows.score)], rtol=1e-5)
    # Each packet's error comes from the first window covering it.
    expected = np.concatenate([windows.packet_error[0:8], windows.packet_error[10:12]])
    np.testing.assert_allclose(scores.packet_error, expected, rtol=1e-5)


def test_adding_another_flow_does_not_change_a_flows_score(engine):
    weights = _random_weights()
    alone = score_features(weights, _features([5]), settings=_settings(), device="cpu")
    together_values = np.concatenate([_features([5]).values, _features([8], seed=9).values])
    together = Features(values=together_values, offsets=np.array([0, 5, 13], np.int64), names=_names())
    both = score_features(weights, together, settings=_settings(), device="cpu")
    assert both.score[0] == pytest.approx(alone.score[0], rel=1e-5)


def _names() -> tuple[str, ...]:
    return tuple(f"f{i}" for i in range(4))


def test_empty_flow_scores_zero(engine):
    features = _features([3, 0, 2])
    scores = score_features(_random_weights(), features, settings=_settings(), device="cpu")
    assert scores.score[1] == 0.0
    assert scores.score[0] > 0
    assert scores.score[2] > 0


def test_injected_anomalous_packet_has_the_largest_error(engine):
    features = synthetic_features(n_flows=80)
    settings = dataclasses.replace(
        _settings(max_packets=8),
        train=TrainSettings(threads=1, device="cpu", epochs=40, batch_size=16, learning_rate=1e-2),
    )
    result = train_model(features, is_val=np.arange(features.n_flows) % 5 == 0, settings=settings)
    values = features.values.copy()
    flow = int(np.flatnonzero(features.lengths >= 4)[0])
    target = int(features.offsets[flow]) + 2
    values[target] += 8.0
    poisoned = Features(values=values, offsets=features.offsets, names=features.names)
    scores = score_features(result.weights, poisoned, settings=settings, device="cpu")
    assert int(np.argmax(scores.packet_error)) == target
    assert int(np.argmax(scores.score)) == flow


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            resolve_device("cuda")
    with pytest.raises(ConfigError):
        resolve_device("tpu")


def test_feature_weights_scale_each_features_error(engine):
    feats = _features([3, 5, 8, 2])
    weights = _random_weights()
    plain = score_features(weights, feats, settings=_settings())
    w = np.array([2.0, 0.5, 1.0, 0.0], np.float32)
    weighted = score_features(weights, feats, settings=_settings(), feature_weights=w)
    np.testing.assert_allclose(weighted.feature_error, plain.feature_error * w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(weighted.score, (plain.feature_error * w).mean(1), rtol=1e-5, atol=1e-7)
    ones = score_features(weights, feats, settings=_settings(), feature_weights=np.ones(4, np.float32))
    np.testing.assert_allclose(ones.score, plain.score, rtol=1e-6)


def test_fit_feature_weights_downweights_noisy_features_only():
    from netae.score import fit_feature_weights

    err = np.tile(np.array([[1e-4, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 4.0]], np.float32), (20, 1))
    w = fit_feature_weights(err)
    assert w.mean() == pytest.approx(1.0, rel=1e-6)
    assert w[0] == pytest.approx(w[1])  # a near-perfect (rare) feature is not amplified
    assert w[7] == pytest.approx(w[1] * 0.1 / 4.0, rel=1e-5)  # the noisy one weighs 40x less
    assert fit_feature_weights(np.zeros((0, 3), np.float32)).tolist() == [1.0, 1.0, 1.0]


def test_worst_packets_kernel_matches_numpy():
    from netae.workflow import worst_packets
    from tests.reference.features import worst_packets as _worst_numpy

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, 500)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    err = rng.integers(0, 5, int(offsets[-1])).astype(np.float32)  # many ties
    np.testing.assert_array_equal(worst_packets(offsets, err, 3), _worst_numpy(offsets, err, 3))


def test_context_weight_scales_only_context_columns():
    from netae.score import fit_feature_weights

    err = np.ones((10, 4), np.float32)
    names = ("log_ip_len_bytes", "ctx_src_flows_log", "tcp_syn", "ctx_pair_flows_log")
    plain = fit_feature_weights(err, names=names, context_weight=1.0)
    np.testing.assert_allclose(plain, 1.0)
    w = fit_feature_weights(err, names=names, context_weight=2.0)
    assert w.mean() == pytest.approx(1.0)
    assert w[1] == pytest.approx(2 * w[0]) and w[3] == pytest.approx(2 * w[2])
