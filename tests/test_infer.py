"""The numba CPU engine (infer.py) computes what the torch model computes (NOTE [cpu engine])."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from netae.config import ModelSettings, Settings
from netae.errors import ConfigError
from netae.features import Scaler
from netae.infer import score_windows_cpu, tanh_approx
from netae.model import build_model, weights_to_numpy
from netae.score import cpu_engine, padded_values, score_features, score_windows
from netae.tables import Features
from netae.windows import make_windows

ROOT = Path(__file__).resolve().parents[1]


def test_tanh_approximation_is_float32_accurate():
    x = np.linspace(-30, 30, 600_001).astype(np.float32)
    err = np.abs(tanh_approx(x).astype(np.float64) - np.tanh(x.astype(np.float64)))
    assert err.max() < 1e-6
    tiny = np.float32(np.logspace(-30, -1, 1000))
    np.testing.assert_allclose(tanh_approx(tiny), np.tanh(tiny.astype(np.float64)), rtol=1e-6)
    assert tanh_approx(np.array([0.0], np.float32))[0] == 0.0


def _features(lengths: list[int], n_features: int, seed: int) -> Features:
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = rng.normal(size=(offsets[-1], n_features)).astype(np.float32)
    values[rng.random(values.shape) < 0.3] = 0.0  # zero inputs take the kernel's shortcut
    return Features(values=values, offsets=offsets, names=tuple(f"f{i}" for i in range(n_features)))


@pytest.mark.parametrize(("hidden", "layers", "n_features"), [(8, 1, 4), (5, 2, 7), (32, 1, 45), (16, 3, 3)])
def test_kernel_matches_torch_window_by_window(hidden, layers, n_features):
    torch.manual_seed(hidden * 10 + layers)
    model = build_model(n_features, ModelSettings(hidden_size=hidden, num_layers=layers))
    with torch.no_grad():  # larger weights than the default init, so the gates saturate sometimes
        for p in model.parameters():
            p.mul_(3.0)
    weights = weights_to_numpy(model)
    raw = _features([1, 2, 9, 30, 6, 64, 100, 3], n_features, seed=layers)
    # Per-flow columns, as the featurizer broadcasts them: constant within each flow.
    flow_of = np.repeat(np.arange(raw.n_flows), raw.lengths)
    raw.values[:, -2:] = np.random.default_rng(2).normal(size=(raw.n_flows, 2))[flow_of]
    rng = np.random.default_rng(layers)
    scaler = Scaler(
        names=raw.names,
        mean_=rng.normal(size=n_features).astype(np.float32),
        scale_=rng.uniform(0.5, 2, n_features).astype(np.float32),
    )
    scaled = scaler.transform(raw)
    windows = make_windows(raw.offsets, 16)
    fw = rng.uniform(0, 2, n_features).astype(np.float32)
    ref = score_windows(
        model, padded_values(scaled.values), windows, device="cpu", input_path="padded", per_packet=True,
        feature_weights=fw,
    )  # fmt: skip
    assert ref.packet_error is not None
    for values, mean, scale in ((scaled.values, None, None), (raw.values, scaler.mean_, scaler.scale_)):
        score, feat, packet = score_windows_cpu(
            weights, values, windows.start, windows.length, windows.skip, feature_weights=fw, threads=2,
            mean=mean, scale=scale,
        )  # fmt: skip
        np.testing.assert_allclose(score, ref.score, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(feat, ref.feature_error, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(packet, ref.packet_error, rtol=1e-4, atol=1e-6)
        assert np.all(packet > 0)  # every packet owned by exactly one window got its error


def test_engines_give_the_same_flow_scores(monkeypatch):
    torch.manual_seed(0)
    weights = weights_to_numpy(build_model(6, ModelSettings(hidden_size=8)))
    features = _features([4, 1, 40, 12, 0, 7], 6, seed=3)
    settings = Settings().replace("model", hidden_size=8).replace("flows", max_packets=8).replace("train", threads=1)
    scaler = Scaler(names=features.names, mean_=np.full(6, 0.5, np.float32), scale_=np.full(6, 2.0, np.float32))
    out = {}
    for engine in ("numba", "torch"):
        monkeypatch.setenv("NETAE_CPU_ENGINE", engine)
        out[engine] = score_features(weights, features, settings=settings, device="cpu", scaler=scaler)
    a, b = out["numba"], out["torch"]
    prescaled = score_features(weights, scaler.transform(features), settings=settings, device="cpu")
    np.testing.assert_allclose(prescaled.score, b.score, rtol=1e-6)
    np.testing.assert_allclose(a.score, b.score, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(a.packet_error, b.packet_error, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(a.worst_window, b.worst_window)
    assert a.score[4] == 0.0


def test_engine_choice(monkeypatch):
    monkeypatch.delenv("NETAE_CPU_ENGINE", raising=False)
    assert cpu_engine() == "numba"
    monkeypatch.setenv("NETAE_CPU_ENGINE", "Torch")
    assert cpu_engine() == "torch"
    monkeypatch.setenv("NETAE_CPU_ENGINE", "onnx")
    with pytest.raises(ConfigError, match="NETAE_CPU_ENGINE"):
        cpu_engine()


def test_cpu_scoring_never_imports_torch(small_model):
    code = (
        "import sys; from pathlib import Path; from netae.workflow import score_captures; "
        f"run = score_captures([{str(ROOT / 'sample_pcaps' / 'mixed.pcap')!r}], model_path=Path({str(small_model)!r}), "
        "device='cpu'); assert run.table.n_flows > 1000; assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "", "NETAE_CPU_ENGINE": "auto"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)


def test_auto_device_is_told_without_torch_where_no_nvidia_driver_exists(monkeypatch):
    import netae.score as score_mod

    monkeypatch.setattr(score_mod.sys, "platform", "linux")
    monkeypatch.setattr(score_mod.os.path, "exists", lambda p: False)
    monkeypatch.setitem(sys.modules, "torch", None)  # importing torch now fails
    assert score_mod.resolve_device("auto") == "cpu"
    assert score_mod.resolve_device("cpu") == "cpu"
    with pytest.raises(ImportError):
        score_mod.resolve_device("cuda")  # an explicit cuda request still asks torch


def test_numba_cache_falls_back_to_a_temporary_folder(monkeypatch):
    import netae

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(netae, "_writable_dir", lambda path: False)
    path = netae.ensure_numba_cache_dir()
    assert path is not None and os.environ["NUMBA_CACHE_DIR"] == path
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/else")
    assert netae.ensure_numba_cache_dir() is None  # an explicit setting is kept
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setattr(netae, "_writable_dir", lambda path: True)
    assert netae.ensure_numba_cache_dir() is None and "NUMBA_CACHE_DIR" not in os.environ
