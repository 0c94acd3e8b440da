"""The model file: round trip, damaged files, and hostile ones (NOTE [model validation])."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import stat
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netae.config import ModelSettings, Settings
from netae.errors import IncompatibleModel, ModelError
from netae.features import Scaler
from netae.modelfile import (
    SCHEMA_VERSION,
    TrainedModel,
    TrainingSummary,
    dump_model,
    expected_shapes,
    load_model,
    model_bytes,
    parse_model,
)
from netae.threshold import Threshold
from tests.helpers.models import model_parts, raw_model_bytes

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("a", "b", "c")


def trained(hidden: int = 4, layers: int = 2, names: tuple[str, ...] = NAMES) -> TrainedModel:
    rng = np.random.default_rng(0)
    shapes = expected_shapes(n_features=len(names), hidden=hidden, layers=layers)
    return TrainedModel(
        weights={k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()},
        scaler=Scaler(names=names, mean_=np.zeros(len(names), np.float32), scale_=np.ones(len(names), np.float32)),
        feature_weights=np.ones(len(names), np.float32),
        settings=Settings(model=ModelSettings(hidden_size=hidden, num_layers=layers)),
        threshold=Threshold("quantile", 1.5, {"quantile": 0.99}),
        threshold_engine="numba",
        training=TrainingSummary(inputs=("x.pcap",), flows=3, epochs=1, best_epoch=1),
        created="2026-01-01T00:00:00Z",
    )


def parts(model: TrainedModel | None = None) -> tuple[dict[str, np.ndarray], dict]:
    return model_parts(model or trained())


def test_round_trip_and_same_bytes_twice(tmp_path):
    path = tmp_path / "m.netae"
    written = dump_model(path, trained())
    m = load_model(path)
    assert m == dataclasses.replace(m, digest=written.digest) and m.model_id == written.model_id
    for name, w in trained().weights.items():
        np.testing.assert_array_equal(m.weights[name], w)
    assert m.threshold.value_ == 1.5 and m.threshold_engine == "numba"
    assert m.schema_version == SCHEMA_VERSION and len(m.model_id) == 12
    assert m.training.inputs == ("x.pcap",) and m.settings.model.num_layers == 2
    assert model_bytes(trained()) == model_bytes(trained())


def test_old_files_without_engine_or_feature_weights_still_load():
    tensors, meta = parts()
    meta["threshold"].pop("engine")
    meta.pop("feature_weights")
    m = parse_model(raw_model_bytes(tensors, meta))
    assert m.threshold_engine == "" and m.feature_weights is None


def test_no_temp_file_left_behind(tmp_path):
    dump_model(tmp_path / "m.netae", trained())
    assert [p.name for p in tmp_path.iterdir()] == ["m.netae"]


def _tamper(raw: bytes, fn) -> bytes:
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    fn(header)
    new = json.dumps(header).encode()
    return struct.pack("<Q", len(new)) + new + raw[8 + n :]


def _set_meta(key, value):
    def fn(header):
        meta = json.loads(header["__metadata__"]["netae"])
        meta[key] = value
        header["__metadata__"]["netae"] = json.dumps(meta)

    return fn


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda raw: raw[: len(raw) // 2], ModelError, "truncated|damaged"),
        (lambda raw: raw[:5], ModelError, "too short"),
        (lambda raw: b"", ModelError, "too short"),
        (lambda raw: raw[:-4] + b"\xff\xff\xff\xff", ModelError, "modified"),
        (
            lambda raw: _tamper(raw, _set_meta("threshold", {"strategy": "quantile", "value": 99.0})),
            ModelError,
            "modified",
        ),
        (lambda raw: _tamper(raw, _set_meta("schema_version", SCHEMA_VERSION + 1)), IncompatibleModel, "newer"),
        (lambda raw: _tamper(raw, lambda h: h.pop("__metadata__")), ModelError, "no readable netae metadata"),
        (lambda raw: pickle.dumps({"weights": [1, 2]}), ModelError, "pickle"),
        (lambda raw: b"\x00" * 64, ModelError, "not a netae model"),
    ],
)
def test_damaged_files_are_refused(mutate, error, message):
    with pytest.raises(error, match=message):
        parse_model(mutate(model_bytes(trained())), name="m.netae")


def _drop(key):
    return lambda t, m: t.pop(key)


def _reshape(key, shape):
    return lambda t, m: t.__setitem__(key, np.zeros(shape, np.float32))


def _meta(fn):
    return lambda t, m: fn(m)


# One crafted file per way the shapes can disagree: with each other, or with the metadata.
SHAPE_FAULTS = {
    "input weights for more features": _reshape("weights.encoder.weight_ih_l0", (16, 5)),
    "input weights for fewer features": _reshape("weights.encoder.weight_ih_l0", (16, 1)),
    "recurrent weights of another hidden size": _reshape("weights.encoder.weight_hh_l0", (32, 8)),
    "decoder hidden size": _reshape("weights.decoder.weight_hh_l1", (16, 3)),
    "upper layer input": _reshape("weights.encoder.weight_ih_l1", (16, 3)),
    "bias length": _reshape("weights.decoder.bias_ih_l0", (15,)),
    "bias as a matrix": _reshape("weights.encoder.bias_hh_l1", (4, 4)),
    "output rows": _reshape("weights.output.weight", (2, 4)),
    "output columns": _reshape("weights.output.weight", (3, 5)),
    "output bias": _reshape("weights.output.bias", (4,)),
    "a missing layer": _drop("weights.decoder.weight_hh_l1"),
    "a missing output": _drop("weights.output.bias"),
    "an extra layer": lambda t, m: t.__setitem__("weights.encoder.weight_hh_l2", np.zeros((16, 4), np.float32)),
    "scaler mean length": _reshape("scaler.mean", (4,)),
    "scaler scale length": _reshape("scaler.scale", (2,)),
    "scaler missing": _drop("scaler.scale"),
    "float64 weights": lambda t, m: t.__setitem__("weights.output.bias", np.zeros(3, np.float64)),
    "int weights": lambda t, m: t.__setitem__("weights.output.bias", np.zeros(3, np.int32)),
    "more feature names": _meta(lambda m: m.__setitem__("feature_names", ["a", "b", "c", "d"])),
    "no feature names": _meta(lambda m: m.__setitem__("feature_names", [])),
    "repeated feature names": _meta(lambda m: m.__setitem__("feature_names", ["a", "a", "c"])),
    "feature weights length": _meta(lambda m: m.__setitem__("feature_weights", [1.0, 1.0])),
    "settings say more layers": _meta(lambda m: m["settings"]["model"].__setitem__("num_layers", 3)),
    "settings say another hidden size": _meta(lambda m: m["settings"]["model"].__setitem__("hidden_size", 8)),
    "feature names not strings": _meta(lambda m: m.__setitem__("feature_names", [1, 2, 3])),
    "threshold not a number": _meta(lambda m: m["threshold"].__setitem__("value", "high")),
    "threshold not an object": _meta(lambda m: m.__setitem__("threshold", 3)),
    "training not an object": _meta(lambda m: m.__setitem__("training", [])),
    "threshold without value": _meta(lambda m: m["threshold"].pop("value")),
}


@pytest.mark.parametrize("fault", SHAPE_FAULTS, ids=list(SHAPE_FAULTS))
def test_crafted_shapes_and_metadata_are_refused(fault):
    tensors, meta = parts()
    SHAPE_FAULTS[fault](tensors, meta)
    with pytest.raises(ModelError) as info:
        parse_model(raw_model_bytes(tensors, meta), name="evil.netae")
    assert "evil.netae" in str(info.value) and "\n" not in str(info.value)


def _set_value(where, index, value):
    def fn(t, m):
        if where in t:
            arr = t[where].copy()
            arr.flat[index] = value
            t[where] = arr
        else:
            m[where][index] = value

    return fn


# NaN and infinities everywhere a number lives.
VALUE_FAULTS = {
    "NaN weight": _set_value("weights.encoder.weight_ih_l0", 3, np.nan),
    "inf weight": _set_value("weights.decoder.weight_hh_l1", 0, np.inf),
    "NaN output bias": _set_value("weights.output.bias", 1, np.nan),
    "NaN scale": _set_value("scaler.scale", 0, np.nan),
    "inf scale": _set_value("scaler.scale", 0, np.inf),
    "zero scale": _set_value("scaler.scale", 2, 0.0),
    "negative scale": _set_value("scaler.scale", 2, -1.0),
    "NaN mean": _set_value("scaler.mean", 1, np.nan),
    "NaN feature weight": _set_value("feature_weights", 1, float("nan")),
    "inf feature weight": _set_value("feature_weights", 1, float("inf")),
    "negative feature weight": _set_value("feature_weights", 1, -1.0),
    "NaN threshold": _set_value("threshold", "value", float("nan")),
    "inf threshold": _set_value("threshold", "value", float("inf")),
    "-inf threshold": _set_value("threshold", "value", float("-inf")),
    "negative threshold": _set_value("threshold", "value", -1.0),
    "infinite idle timeout": _meta(lambda m: m["settings"]["flows"].__setitem__("idle_timeout_s", float("inf"))),
    "huge active timeout": _meta(lambda m: m["settings"]["flows"].__setitem__("active_timeout_s", 1e300)),
    "NaN context window": _meta(lambda m: m["settings"]["context"].__setitem__("window_s", float("nan"))),
    "NaN context weight": _meta(lambda m: m["settings"]["model"].__setitem__("context_weight", float("nan"))),
}


@pytest.mark.parametrize("fault", VALUE_FAULTS, ids=list(VALUE_FAULTS))
def test_non_finite_or_absurd_values_are_refused(fault):
    tensors, meta = parts()
    VALUE_FAULTS[fault](tensors, meta)
    with pytest.raises(ModelError, match="evil.netae"):
        parse_model(raw_model_bytes(tensors, meta), name="evil.netae")


def test_pickle_in_place_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "m.netae"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelError):
        load_model(path)
    assert not marker.exists()


def test_missing_file_and_directory_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope.netae")
    with pytest.raises(ModelError, match="is a directory"):
        load_model(tmp_path)


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.netae"
    os.mkfifo(fifo)
    link = tmp_path / "link.netae"
    link.symlink_to(fifo)
    for path in (fifo, link):
        with pytest.raises(ModelError, match="not a regular file"):
            load_model(path)  # a blocking open would hang here: no writer ever comes


def test_symlink_to_a_character_device_is_refused(tmp_path):
    dev = tmp_path / "zero"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # what /dev/zero is, made here
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    link = tmp_path / "model.netae"
    link.symlink_to(dev)
    with pytest.raises(ModelError, match="not a regular file"):
        load_model(link)


def test_oversized_file_is_refused_before_reading(tmp_path, monkeypatch):
    import netae.modelfile as mf

    path = tmp_path / "big.netae"
    dump_model(path, trained())
    monkeypatch.setattr(mf, "MAX_MODEL_BYTES", 100)
    with pytest.raises(ModelError, match="larger than"):
        load_model(path)


@pytest.mark.parametrize("fault", ["input weights for more features", "output rows", "settings say more layers"])
def test_cli_exits_2_with_one_line_on_a_crafted_model(tmp_path, fault):
    """In a process of its own: a kernel reading out of bounds would die of a signal, not exit 2."""
    tensors, meta = parts(trained(names=tuple(f"f{i}" for i in range(3))))
    SHAPE_FAULTS[fault](tensors, meta)
    path = tmp_path / "evil.netae"
    path.write_bytes(raw_model_bytes(tensors, meta))
    r = subprocess.run(
        [sys.executable, "-m", "netae", "score", str(ROOT / "sample_pcaps" / "mixed.pcap"), "-m", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and "evil.netae" in r.stderr, r.stderr
    assert r.stdout == ""
