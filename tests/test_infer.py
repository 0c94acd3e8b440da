"""The numba CPU engine (infer.py) computes what the torch model computes (NOTE [cpu engine])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from netae.config import FlowSettings, ModelSettings, Settings, TrainSettings
from netae.errors import ConfigError, MissingExtra
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


def _model_and_inputs(hidden, layers, n_features, lengths, seed=0):
    """A torch model with weights large enough to saturate gates sometimes, raw features, a scaler."""
    torch.manual_seed(hidden * 10 + layers + seed)
    model = build_model(n_features, ModelSettings(hidden_size=hidden, num_layers=layers))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    raw = _features(lengths, n_features, seed=layers + seed)
    # Per-flow columns, as the featurizer broadcasts them: constant within each flow.
    flow_of = np.repeat(np.arange(raw.n_flows), raw.lengths)
    n_const = min(2, n_features)
    raw.values[:, -n_const:] = np.random.default_rng(2).normal(size=(raw.n_flows, n_const))[flow_of]
    rng = np.random.default_rng(layers)
    scaler = Scaler(
        names=raw.names,
        mean_=rng.normal(size=n_features).astype(np.float32),
        scale_=rng.uniform(0.5, 2, n_features).astype(np.float32),
    )
    return model, raw, scaler


# The configuration space the kernel accepts: any layers (1-8), hidden size, feature count and
# window (max_packets >= 2), flows of any length from 1. Corners first, then a seeded sample.
_CORNERS = [
    # hidden, layers, n_features, window, lengths
    (1, 1, 1, 2, [1, 2, 3, 5]),
    (8, 1, 4, 16, [1, 2, 9, 30, 6, 64, 100, 3]),
    (5, 2, 7, 16, [1, 2, 9, 30, 6, 64, 100, 3]),
    (32, 1, 45, 16, [1, 2, 9, 30, 6, 64, 100, 3]),
    (16, 3, 3, 16, [1, 2, 9, 30, 6, 64, 100, 3]),
    (3, 8, 2, 3, [1, 1, 4, 7]),
    (33, 2, 5, 64, [1, 64, 65, 129, 200]),
    (4, 1, 9, 100, [1, 99, 100, 101]),
]
_rng = np.random.default_rng(17)
_SAMPLED = [
    (
        int(_rng.integers(1, 40)),
        int(_rng.integers(1, 5)),
        int(_rng.integers(1, 50)),
        int(_rng.integers(2, 40)),
        [int(x) for x in _rng.integers(1, 90, 6)] + [1],
    )
    for _ in range(8)
]


@pytest.mark.parametrize(("hidden", "layers", "n_features", "window", "lengths"), _CORNERS + _SAMPLED)
def test_kernel_matches_torch_window_by_window(hidden, layers, n_features, window, lengths):
    model, raw, scaler = _model_and_inputs(hidden, layers, n_features, lengths)
    weights = weights_to_numpy(model)
    scaled = scaler.transform(raw)
    windows = make_windows(raw.offsets, window)
    fw = np.random.default_rng(layers).uniform(0, 2, n_features).astype(np.float32)
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


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["value", "mean", "scale", "weight", "constant_column"])
def test_non_finite_inputs_give_non_finite_scores(bad, where):
    """NOTE [non-finite inputs]: the window that holds a NaN or infinity never scores finite."""
    model, raw, scaler = _model_and_inputs(8, 2, 6, [5, 3, 1, 7])
    weights = weights_to_numpy(model)
    values, mean, scale = raw.values.copy(), scaler.mean_.copy(), scaler.scale_.copy()
    windows = make_windows(raw.offsets, 4)
    hit = np.zeros(windows.n_windows, bool)
    if where == "value":
        values[6, 1] = bad  # flow 1 (rows 5-7), its only window
        hit[windows.flow == 1] = True
    elif where == "constant_column":
        values[5:8, -1] = bad  # the same non-finite value at every step of flow 1
        hit[windows.flow == 1] = True
    elif where == "mean":
        mean[2] = bad
        hit[:] = True
    elif where == "scale":
        # x / inf is exactly 0, a finite input; the model file's check refuses such a scale.
        scale[2] = bad if np.isnan(bad) else 0.0
        hit[:] = True
    else:
        weights = {**weights, "encoder.weight_hh_l0": weights["encoder.weight_hh_l0"].copy()}
        weights["encoder.weight_hh_l0"][0, 0] = bad
        hit[:] = True  # 0 * NaN is NaN: even the first step's recurrent product is not finite
    score, feat, packet = score_windows_cpu(
        weights, values, windows.start, windows.length, windows.skip, feature_weights=None, threads=1,
        mean=mean, scale=scale,
    )  # fmt: skip
    assert not np.isfinite(score[hit]).any(), score
    assert np.isfinite(score[~hit]).all(), score
    assert not np.isfinite(feat[hit]).all(axis=1).any()


def test_tanh_keeps_nan():
    """The clamp in the kernel's tanh lets NaN through (a min/max clamp may turn it into +-1)."""
    x = np.array([np.nan, np.inf, -np.inf, 100.0, -100.0], np.float32)
    out = tanh_approx(x)
    assert np.isnan(out[0]) and out[1] == pytest.approx(1.0) and out[2] == pytest.approx(-1.0)


def test_thread_count_is_restored_after_scoring():
    from netae.jit import numba

    model, raw, _ = _model_and_inputs(4, 1, 3, [3, 2])
    windows = make_windows(raw.offsets, 8)
    before = numba.get_num_threads()
    score_windows_cpu(
        weights_to_numpy(model), raw.values, windows.start, windows.length, windows.skip, feature_weights=None,
        threads=1,
    )  # fmt: skip
    assert numba.get_num_threads() == before
    torch_before = torch.get_num_threads()
    settings = Settings(model=ModelSettings(hidden_size=4), train=TrainSettings(threads=max(1, torch_before - 1) or 1))
    score_features(weights_to_numpy(model), raw, settings=settings, device="cpu", engine="torch")
    assert torch.get_num_threads() == torch_before


def test_engines_give_the_same_flow_scores():
    torch.manual_seed(0)
    weights = weights_to_numpy(build_model(6, ModelSettings(hidden_size=8)))
    features = _features([4, 1, 40, 12, 0, 7], 6, seed=3)
    settings = Settings(
        model=ModelSettings(hidden_size=8), flows=FlowSettings(max_packets=8), train=TrainSettings(threads=1)
    )
    scaler = Scaler(names=features.names, mean_=np.full(6, 0.5, np.float32), scale_=np.full(6, 2.0, np.float32))
    out = {}
    for engine in ("numba", "torch"):
        out[engine] = score_features(weights, features, settings=settings, device="cpu", scaler=scaler, engine=engine)
        assert out[engine].engine == engine
    a, b = out["numba"], out["torch"]
    prescaled = score_features(weights, scaler.transform(features), settings=settings, device="cpu")
    np.testing.assert_allclose(prescaled.score, b.score, rtol=1e-6)
    np.testing.assert_allclose(a.score, b.score, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(a.packet_error, b.packet_error, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(a.worst_window, b.worst_window)
    assert a.score[4] == 0.0


def test_engine_choice():
    assert cpu_engine() == "numba"
    assert cpu_engine("torch") == "torch"
    with pytest.raises(ConfigError, match="engine must be one of"):
        cpu_engine("onnx")


def test_cpu_scoring_never_imports_torch(small_model):
    code = (
        "import sys; from pathlib import Path; from netae.workflow import score_captures; "
        f"run = score_captures([{str(ROOT / 'sample_pcaps' / 'mixed.pcap')!r}], model_path=Path({str(small_model)!r}), "
        "device='cpu'); assert run.table.n_flows > 1000; assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": ""}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)


def test_auto_device_is_told_without_torch_where_no_nvidia_driver_exists(monkeypatch):
    import netae.score as score_mod

    monkeypatch.setattr(score_mod.sys, "platform", "linux")
    monkeypatch.setattr(score_mod.os.path, "exists", lambda p: False)
    monkeypatch.setitem(sys.modules, "torch", None)  # importing torch now fails
    assert score_mod.resolve_device("auto") == "cpu"
    assert score_mod.resolve_device("cpu") == "cpu"
    with pytest.raises(MissingExtra, match=r"netae\[train\]"):
        score_mod.resolve_device("cuda")  # an explicit cuda request needs torch, and says how to get it


def test_numba_cache_falls_back_to_a_temporary_folder(monkeypatch):
    import netae.jit as jit

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(jit, "_writable_dir", lambda path: False)
    path = jit.choose_cache_dir()
    assert path is not None and "netae-numba-cache" in path
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/else")
    assert jit.choose_cache_dir() is None  # an explicit setting is kept
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setattr(jit, "_writable_dir", lambda path: True)
    assert jit.choose_cache_dir() is None


def test_importing_netae_has_no_side_effects(tmp_path):
    """No folder made, no environment variable set, numba not even imported (``netae --help``)."""
    code = (
        "import os, sys; before = dict(os.environ); import netae, netae.cli; "
        "assert dict(os.environ) == before, set(os.environ) ^ set(before); "
        "assert 'numba' not in sys.modules and 'torch' not in sys.modules"
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {"PYTHONPATH": str(ROOT), "PATH": "", "HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env=env)
    assert not (tmp_path / "cache").exists() and not any(home.iterdir())
