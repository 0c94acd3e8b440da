from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest

from netae.errors import IncompatibleModel, ModelError
from netae.modelfile import SCHEMA_VERSION, dump_model, load_model, model_bytes, parse_model

META = {
    "created": "2026-01-01T00:00:00Z",
    "feature_names": ["a", "b"],
    "settings": {},
    "threshold": {"strategy": "quantile", "value": 1.5, "params": {}},
    "training": {"flows": 3},
}


def parts():
    return {
        "weights": {"enc.weight": np.arange(6, dtype=np.float32).reshape(2, 3)},
        "scaler_mean": np.array([0.5, 1.0], dtype=np.float32),
        "scaler_scale": np.array([1.0, 2.0], dtype=np.float32),
        "meta": dict(META),
    }


def test_round_trip_and_same_bytes_twice(tmp_path):
    path = tmp_path / "m.netae"
    dump_model(path, **parts())
    m = load_model(path)
    np.testing.assert_array_equal(m.weights["enc.weight"], parts()["weights"]["enc.weight"])
    assert m.meta["threshold"]["value"] == 1.5
    assert m.meta["schema_version"] == SCHEMA_VERSION
    assert len(m.model_id) == 12
    assert model_bytes(**parts()) == model_bytes(**parts())


def test_no_temp_file_left_behind(tmp_path):
    dump_model(tmp_path / "m.netae", **parts())
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
def test_damaged_files_are_refused(tmp_path, mutate, error, message):
    raw = model_bytes(**parts())
    with pytest.raises(error, match=message):
        parse_model(mutate(raw), name="m.netae")


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


def test_missing_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope.netae")
