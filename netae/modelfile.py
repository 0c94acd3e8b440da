"""The ``.netae`` model file: safetensors tensors plus JSON metadata; never a pickle.

Layout: a safetensors file whose tensors are the model weights (``weights.*``) and the scaler
(``scaler.mean``, ``scaler.scale``), and whose ``__metadata__`` holds one key, ``netae``, with a
JSON document: schema version, netae version, creation time, feature names, settings, threshold,
training summary. ``digest`` is a SHA-256 over the tensors and the rest of the metadata, so a
file altered after it was written is refused. Loading parses JSON and raw little-endian arrays
only; nothing in the file is ever executed. numpy only: ``netae info`` never imports torch.

A loaded file is a ``TrainedModel``, built here and only here: typed, frozen, and checked
(NOTE [model validation]) before anything else sees it.

NOTE [model validation]
The digest only proves that the file is what some writer wrote; anyone can write one. So every
file is checked as untrusted input before use, and anything wrong is a ``ModelError`` (exit 2)
with one line saying what:
- the path is a regular file (a FIFO, a device or a directory is refused before it is opened,
  and it is opened non-blocking) of at most ``MAX_MODEL_BYTES``;
- the settings load and pass their range checks (finite, bounded timeouts and sizes);
- the tensors are exactly the autoencoder's, float32, each of the shape that the settings'
  hidden size and layers and the number of feature names give;
- every weight, scale, mean, feature weight and the threshold is finite; scales are positive,
  feature weights and the threshold not negative.
The compiled kernel (``infer.py``) reads its arrays without bounds checks, so it must never see
shapes that were not checked here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from netae import __version__
from netae.config import Settings, settings_from_dict
from netae.errors import ConfigError, IncompatibleModel, ModelError
from netae.features import Scaler
from netae.threshold import Threshold

__all__ = [
    "MAX_MODEL_BYTES",
    "SCHEMA_VERSION",
    "Calibration",
    "EpochRecord",
    "ModelFile",
    "TrainedModel",
    "TrainingSummary",
    "dump_model",
    "expected_shapes",
    "load_model",
    "model_bytes",
    "parse_model",
    "unchecked_bytes",
]

SCHEMA_VERSION = 1
_MAX_HEADER_BYTES = 64 << 20
# The largest model the settings allow (hidden 4096, 8 layers) is far larger; real ones are
# about 100 KB. A bigger file is refused before it is read.
MAX_MODEL_BYTES = 1 << 30
_MODELLED_META = frozenset(
    ("schema_version", "netae_version", "created", "feature_names", "settings", "threshold", "training")
    + ("feature_weights", "calibration", "digest")
)
_REQUIRED_META = ("schema_version", "netae_version", "created", "feature_names", "settings", "threshold", "training")


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """One training epoch as the model file keeps it."""

    epoch: int
    train_loss: float
    val_loss: float
    seconds: float
    packets_per_s: float


@dataclass(frozen=True, slots=True)
class TrainingSummary:
    """What the model was trained on and how the training went."""

    inputs: tuple[str, ...] = ()
    failed_inputs: tuple[str, ...] = ()
    flows: int = 0
    packets: int = 0
    fit_flows: int = 0
    val_flows: int = 0
    epochs: int = 0
    best_epoch: int = 0
    device: str = ""
    input_path: str = ""
    ranks: int = 1
    history: tuple[EpochRecord, ...] = ()
    val_score_quantiles: Mapping[str, float] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    @property
    def best(self) -> EpochRecord | None:
        """The epoch whose weights were kept, when the history has it."""
        return self.history[self.best_epoch - 1] if 0 < self.best_epoch <= len(self.history) else None


@dataclass(frozen=True, slots=True)
class Calibration:
    """The last ``netae calibrate`` run: its inputs, and the threshold it replaced."""

    inputs: tuple[str, ...]
    flows: int
    previous_threshold: float
    created: str
    flagged_by_previous: float = 0.0  # the share of the calibration flows the old threshold flagged
    forced: bool = False  # written with --force despite the guards' concerns


@dataclass(frozen=True, slots=True)
class TrainedModel:
    """A model as netae uses it: weights, scaler, feature weights, threshold, settings, provenance.

    ``threshold_engine`` is what ran the model on the validation flows the threshold was fitted
    on (``numba`` or ``torch``; empty in files written before it was recorded). ``extra`` holds
    the metadata keys this class does not model (a later stage's fitted values), kept verbatim
    through load and save; their readers check them. Update with
    ``dataclasses.replace``; ``model_id`` and ``schema_version`` describe the file it was read
    from (empty and current for a model not yet written).
    """

    weights: Mapping[str, npt.NDArray[np.float32]]
    scaler: Scaler
    feature_weights: npt.NDArray[np.float32] | None
    settings: Settings
    threshold: Threshold
    training: TrainingSummary
    created: str
    netae_version: str = __version__
    threshold_engine: str = ""
    calibration: Calibration | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    digest: str = ""

    @property
    def model_id(self) -> str:
        """Short stable identifier of this model (the first 12 hex digits of its digest)."""
        return self.digest[:12]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.scaler.names

    @property
    def n_features(self) -> int:
        return len(self.scaler.names)

    def to_meta(self) -> dict[str, Any]:
        """The metadata document as the file stores it (``digest`` and schema included once read)."""
        tr = self.training
        training: dict[str, Any] = {
            **{f.name: getattr(tr, f.name) for f in dataclasses.fields(tr)},
            "inputs": list(tr.inputs),
            "failed_inputs": list(tr.failed_inputs),
            "history": [dataclasses.asdict(e) for e in tr.history],
            "val_score_quantiles": dict(tr.val_score_quantiles),
        }
        meta: dict[str, Any] = {
            **self.extra,
            "schema_version": self.schema_version,
            "netae_version": self.netae_version,
            "created": self.created,
            "feature_names": list(self.feature_names),
            "settings": self.settings.to_dict(),
            "threshold": self.threshold.to_dict(),
            "training": training,
        }
        if self.threshold_engine:
            meta["threshold"]["engine"] = self.threshold_engine
        if self.feature_weights is not None:
            meta["feature_weights"] = [float(w) for w in self.feature_weights]
        if self.calibration is not None:
            meta["calibration"] = {**dataclasses.asdict(self.calibration), "inputs": list(self.calibration.inputs)}
        if self.digest:
            meta["digest"] = self.digest
        return meta


ModelFile = TrainedModel  # the name older code uses


def _digest(tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
    body = {k: v for k, v in meta.items() if k != "digest"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return h.hexdigest()


def _tensors(model: TrainedModel) -> dict[str, np.ndarray]:
    tensors = {f"weights.{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in model.weights.items()}
    tensors["scaler.mean"] = np.ascontiguousarray(model.scaler.mean_, dtype=np.float32)
    tensors["scaler.scale"] = np.ascontiguousarray(model.scaler.scale_, dtype=np.float32)
    return tensors


def _sealed(model: TrainedModel) -> tuple[bytes, TrainedModel]:
    """The file's bytes, and the model as they describe it (schema and digest set)."""
    from safetensors.numpy import save

    validate(model, name="the model to write")
    tensors = _tensors(model)
    doc = dataclasses.replace(model, schema_version=SCHEMA_VERSION, digest="").to_meta()
    digest = _digest(tensors, doc)
    doc["digest"] = digest
    data = bytes(save(tensors, metadata={"netae": json.dumps(doc, sort_keys=True)}))
    return data, dataclasses.replace(model, schema_version=SCHEMA_VERSION, digest=digest)


def unchecked_bytes(tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    """A file of exactly these tensors and metadata, not validated, with a matching digest.

    For tests and ``bench/fuzz.py``, which write the files an attacker would (a digest proves
    nothing about who wrote a file); netae itself writes models with ``dump_model``.
    """
    from safetensors.numpy import save

    meta = {k: v for k, v in meta.items() if k != "digest"}
    meta["schema_version"] = meta.get("schema_version", SCHEMA_VERSION)
    meta["digest"] = _digest(tensors, meta)
    return bytes(save(tensors, metadata={"netae": json.dumps(meta)}))


def model_bytes(model: TrainedModel) -> bytes:
    """Serialise a model; the same model gives the same bytes. It is validated first."""
    return _sealed(model)[0]


def dump_model(path: Path, model: TrainedModel) -> TrainedModel:
    """Write a model file atomically (``files.atomic_write``); returns the model as written."""
    from netae.files import atomic_write

    data, sealed = _sealed(model)
    with atomic_write(path, binary=True) as fh:
        fh.write(data)
    return sealed


def read_model_bytes(path: Path) -> bytes:
    """The bytes of the model file at ``path``: a regular file of at most ``MAX_MODEL_BYTES``.

    The path is checked with ``os.stat`` before it is opened (a FIFO would block ``open`` and a
    device such as /dev/zero never ends), opened non-blocking, and checked again on the open
    descriptor, so a file swapped in between is caught too.
    """
    try:
        st = os.stat(path)
        _check_regular(path, st)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise ModelError(f"model file {path} does not exist; train one with `netae train`") from exc
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from exc
    try:
        _check_regular(path, os.fstat(fd))
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            raw = fh.read(MAX_MODEL_BYTES + 1)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from exc
    finally:
        if fd >= 0:
            os.close(fd)
    if len(raw) > MAX_MODEL_BYTES:
        raise ModelError(f"model file {path} is larger than {MAX_MODEL_BYTES >> 20} MiB; it is not a netae model")
    return raw


def _check_regular(path: Path, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise ModelError(f"model path {path} is a directory, not a model file")
    if not stat.S_ISREG(st.st_mode):
        raise ModelError(f"model path {path} is not a regular file (a pipe, socket or device); refusing to read it")
    if st.st_size > MAX_MODEL_BYTES:
        raise ModelError(f"model file {path} is larger than {MAX_MODEL_BYTES >> 20} MiB; it is not a netae model")


def load_model(path: Path) -> TrainedModel:
    """Read, verify and validate a model file; any problem is a ``ModelError`` naming the file."""
    return parse_model(read_model_bytes(Path(path)), name=str(path))


def _header_meta(raw: bytes, name: str) -> dict[str, Any]:
    """The netae metadata document of the safetensors header, schema checked."""
    if raw[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") or raw[:2] == b"PK":
        raise ModelError(f"{name} is a pickle or zip archive, not a netae model; it was not loaded")
    if len(raw) < 8:
        raise ModelError(f"{name} is not a netae model file (too short: {len(raw)} bytes)")
    (n_header,) = struct.unpack("<Q", raw[:8])
    if n_header < 2 or n_header > _MAX_HEADER_BYTES or 8 + n_header > len(raw) or raw[8:9] != b"{":
        raise ModelError(f"{name} is not a netae model file, or it is truncated")
    try:
        header = json.loads(raw[8 : 8 + n_header].decode("utf-8"))
        meta = json.loads(header["__metadata__"]["netae"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, RecursionError) as exc:
        raise ModelError(f"{name} is not a netae model file (no readable netae metadata)") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"{name} has malformed netae metadata")
    version = meta.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelError(f"{name} has no schema version; it is not a netae model")
    if version > SCHEMA_VERSION:
        raise IncompatibleModel(
            f"{name} uses model schema {version}, newer than this netae ({__version__}) reads "
            f"(schema {SCHEMA_VERSION}); upgrade netae"
        )
    if version < SCHEMA_VERSION:
        raise IncompatibleModel(f"{name} uses old model schema {version}; retrain it with this netae")
    missing = [k for k in _REQUIRED_META if k not in meta]
    if missing:
        raise ModelError(f"{name} metadata lacks {', '.join(missing)}; the file is damaged")
    return meta


def parse_model(raw: bytes, *, name: str = "model") -> TrainedModel:
    """Parse and validate model bytes without executing anything in them."""
    meta = _header_meta(raw, name)
    try:
        from safetensors.numpy import load

        tensors = load(raw)
    except Exception as exc:  # safetensors raises its own error types for any bad layout
        raise ModelError(f"{name} is damaged: its tensors cannot be read ({type(exc).__name__})") from exc
    if meta.get("digest") != _digest(tensors, meta):
        raise ModelError(f"{name} was modified after it was written (digest mismatch); refusing to use it")
    try:
        model = _from_document(tensors, meta, name)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = f"lacks {exc.args[0]}" if isinstance(exc, KeyError) else f"is malformed ({exc})"
        raise ModelError(f"{name}: metadata {detail}; the file is damaged") from exc
    validate(model, name=name)
    return model


def _from_document(tensors: dict[str, np.ndarray], meta: dict[str, Any], name: str) -> TrainedModel:
    """The typed model from the file's tensors and metadata (types checked, values not yet)."""
    names = meta["feature_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelError(f"{name}: feature_names must be a list of names; the file is damaged")
    for key in ("scaler.mean", "scaler.scale"):
        if key not in tensors:
            raise ModelError(f"{name} lacks tensor {key}; the file is damaged")
    try:
        settings = settings_from_dict(_saved_settings(_mapping(meta["settings"], "settings")), source="model settings")
    except ConfigError as exc:
        raise IncompatibleModel(f"{name}: the model's settings are not usable: {exc}") from exc
    threshold = _mapping(meta["threshold"], "threshold")
    fw = meta.get("feature_weights")
    calibration = meta.get("calibration")
    return TrainedModel(
        weights={k.removeprefix("weights."): v for k, v in tensors.items() if k.startswith("weights.")},
        scaler=Scaler(names=tuple(names), mean_=tensors["scaler.mean"], scale_=tensors["scaler.scale"]),
        feature_weights=None if fw is None else np.asarray([_number(w, "feature_weights") for w in fw], np.float32),
        settings=settings,
        threshold=Threshold(
            strategy=str(threshold["strategy"]),
            value_=_number(threshold["value"], "threshold value"),
            params=dict(_mapping(threshold.get("params", {}), "threshold params")),
        ),
        threshold_engine=str(threshold.get("engine", "")),
        training=_training(_mapping(meta["training"], "training")),
        created=str(meta["created"]),
        netae_version=str(meta["netae_version"]),
        calibration=None if calibration is None else _calibration(_mapping(calibration, "calibration")),
        extra={k: v for k, v in meta.items() if k not in _MODELLED_META},
        schema_version=int(meta["schema_version"]),
        digest=str(meta["digest"]),
    )


def _saved_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """The model's settings; flow rules that it predates keep their old behaviour."""
    flows = saved.get("flows")
    if isinstance(flows, dict) and "tcp_close_linger_s" not in flows:
        return {**saved, "flows": {**flows, "tcp_close_linger_s": 0.0}}  # made before FIN/RST closing
    return saved


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a JSON object")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    return float(value)


def _training(tr: dict[str, Any]) -> TrainingSummary:
    history = tuple(
        EpochRecord(
            epoch=int(_number(h["epoch"], "history epoch")),
            train_loss=_number(h["train_loss"], "history train_loss"),
            val_loss=_number(h["val_loss"], "history val_loss"),
            seconds=_number(h.get("seconds", 0.0), "history seconds"),
            packets_per_s=_number(h.get("packets_per_s", 0.0), "history packets_per_s"),
        )
        for h in tr.get("history") or ()
    )
    counts = ("flows", "packets", "fit_flows", "val_flows", "epochs", "best_epoch", "ranks")
    ints = {k: int(_number(tr[k], k)) for k in counts if k in tr}
    quantiles = tr.get("val_score_quantiles") or {}
    return TrainingSummary(
        inputs=tuple(str(s) for s in tr.get("inputs") or ()),
        failed_inputs=tuple(str(s) for s in tr.get("failed_inputs") or ()),
        device=str(tr.get("device", "")),
        input_path=str(tr.get("input_path", "")),
        history=history,
        val_score_quantiles={str(k): _number(v, "val_score_quantiles") for k, v in quantiles.items()},
        seconds=_number(tr.get("seconds", 0.0), "seconds"),
        **ints,
    )


def _calibration(cal: dict[str, Any]) -> Calibration:
    return Calibration(
        inputs=tuple(str(s) for s in cal.get("inputs") or ()),
        flows=int(_number(cal.get("flows", 0), "calibration flows")),
        previous_threshold=_number(cal.get("previous_threshold", math.nan), "previous threshold"),
        created=str(cal.get("created", "")),
        flagged_by_previous=_number(cal.get("flagged_by_previous", 0.0), "calibration flagged_by_previous"),
        forced=bool(cal.get("forced", False)),
    )


def expected_shapes(*, n_features: int, hidden: int, layers: int) -> dict[str, tuple[int, ...]]:
    """Every weight tensor of the autoencoder (``model.FlowAutoencoder``) and its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for lstm in ("encoder", "decoder"):
        for k in range(layers):
            n_in = n_features if (lstm == "encoder" and k == 0) else hidden
            shapes[f"{lstm}.weight_ih_l{k}"] = (4 * hidden, n_in)
            shapes[f"{lstm}.weight_hh_l{k}"] = (4 * hidden, hidden)
            shapes[f"{lstm}.bias_ih_l{k}"] = (4 * hidden,)
            shapes[f"{lstm}.bias_hh_l{k}"] = (4 * hidden,)
    shapes["output.weight"] = (n_features, hidden)
    shapes["output.bias"] = (n_features,)
    return shapes


def validate(model: TrainedModel, *, name: str) -> None:
    """NOTE [model validation]: shapes, dtypes and values; a ``ModelError`` on the first fault."""
    n = model.n_features
    ms = model.settings.model
    if n == 0:
        raise ModelError(f"{name}: the model has no features; the file is damaged")
    if len(set(model.feature_names)) != n:
        raise ModelError(f"{name}: feature names repeat; the file is damaged")
    expected = expected_shapes(n_features=n, hidden=ms.hidden_size, layers=ms.num_layers)
    if set(model.weights) != set(expected):
        extra, lacking = sorted(set(model.weights) - set(expected)), sorted(set(expected) - set(model.weights))
        raise ModelError(
            f"{name}: the weights are not those of a {ms.num_layers}-layer autoencoder of hidden size "
            f"{ms.hidden_size}"
            + (f" (missing {', '.join(lacking[:3])})" if lacking else "")
            + (f" (unexpected {', '.join(extra[:3])})" if extra else "")
        )
    arrays: list[tuple[str, np.ndarray, tuple[int, ...]]] = [(k, model.weights[k], s) for k, s in expected.items()]
    arrays += [("scaler.mean", model.scaler.mean_, (n,)), ("scaler.scale", model.scaler.scale_, (n,))]
    if model.feature_weights is not None:
        arrays.append(("feature_weights", model.feature_weights, (n,)))
    for key, arr, shape in arrays:
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32:
            raise ModelError(f"{name}: {key} must be float32, not {getattr(arr, 'dtype', type(arr).__name__)}")
        if arr.shape != shape:
            raise ModelError(f"{name}: {key} has shape {arr.shape}, expected {shape} for {n} features")
        if not np.isfinite(arr).all():
            raise ModelError(f"{name}: {key} holds NaN or infinite values; the model is unusable")
    if not (model.scaler.scale_ > 0).all():
        raise ModelError(f"{name}: scaler.scale has values that are not positive; the model is unusable")
    if model.feature_weights is not None and not (model.feature_weights >= 0).all():
        raise ModelError(f"{name}: feature_weights has negative values; the model is unusable")
    value = model.threshold.value_
    if not math.isfinite(value) or value < 0:
        raise ModelError(f"{name}: the threshold {value!r} is not a finite, non-negative number")
