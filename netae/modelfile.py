"""The ``.netae`` model file: safetensors tensors plus JSON metadata; never a pickle.

Layout: a safetensors file whose tensors are the model weights (``weights.*``) and the scaler
(``scaler.mean``, ``scaler.scale``), and whose ``__metadata__`` holds one key, ``netae``, with a
JSON document: schema version, netae version, creation time, feature names, settings, threshold,
training summary. ``digest`` is a SHA-256 over the tensors and the rest of the metadata, so a
file altered after it was written is refused. Loading parses JSON and raw little-endian arrays
only; nothing in the file is ever executed. numpy only: ``netae info`` never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netae import __version__
from netae.errors import IncompatibleModel, ModelError

__all__ = ["SCHEMA_VERSION", "ModelFile", "dump_model", "load_model", "model_bytes"]

SCHEMA_VERSION = 1
_MAX_HEADER_BYTES = 64 << 20
_REQUIRED_META = ("schema_version", "netae_version", "created", "feature_names", "settings", "threshold", "training")


@dataclass(frozen=True, slots=True)
class ModelFile:
    """A loaded model: weights and scaler arrays, and the metadata document."""

    weights: dict[str, np.ndarray]
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    meta: dict[str, Any]

    @property
    def model_id(self) -> str:
        """Short stable identifier of this model (the first 12 hex digits of its digest)."""
        return str(self.meta.get("digest", ""))[:12]


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


def model_bytes(
    *, weights: dict[str, np.ndarray], scaler_mean: np.ndarray, scaler_scale: np.ndarray, meta: dict[str, Any]
) -> bytes:
    """Serialise a model; the same inputs give the same bytes."""
    from safetensors.numpy import save

    tensors = {f"weights.{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
    tensors["scaler.mean"] = np.ascontiguousarray(scaler_mean, dtype=np.float32)
    tensors["scaler.scale"] = np.ascontiguousarray(scaler_scale, dtype=np.float32)
    doc = {**meta, "schema_version": SCHEMA_VERSION, "netae_version": meta.get("netae_version", __version__)}
    doc["digest"] = _digest(tensors, doc)
    return bytes(save(tensors, metadata={"netae": json.dumps(doc, sort_keys=True)}))


def dump_model(path: Path, **parts: Any) -> None:
    """Write a model file atomically (see ``output.atomic_write``)."""
    from netae.output import atomic_write

    data = model_bytes(**parts)
    with atomic_write(path, binary=True) as fh:
        fh.write(data)


def load_model(path: Path) -> ModelFile:
    """Read and verify a model file; any problem is a ``ModelError`` naming the file."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise ModelError(f"model file {path} does not exist; train one with `netae train`") from exc
    except IsADirectoryError as exc:
        raise ModelError(f"model path {path} is a directory, not a model file") from exc
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from exc
    return parse_model(raw, name=str(path))


def parse_model(raw: bytes, *, name: str = "model") -> ModelFile:
    """Parse model bytes without executing anything in them."""
    if raw[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") or raw[:2] == b"PK":
        raise ModelError(f"{name} is a pickle or zip archive, not a netae model; it was not loaded")
    if len(raw) < 8:
        raise ModelError(f"{name} is not a netae model file (too short: {len(raw)} bytes)")
    (n_header,) = struct.unpack("<Q", raw[:8])
    if n_header < 2 or n_header > _MAX_HEADER_BYTES or 8 + n_header > len(raw) or raw[8:9] != b"{":
        raise ModelError(f"{name} is not a netae model file, or it is truncated")
    try:
        header = json.loads(raw[8 : 8 + n_header].decode("utf-8"))
        meta_text = header["__metadata__"]["netae"]
        meta = json.loads(meta_text)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelError(f"{name} is not a netae model file (no readable netae metadata)") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"{name} has malformed netae metadata")
    version = meta.get("schema_version")
    if not isinstance(version, int):
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
    try:
        from safetensors.numpy import load

        tensors = load(raw)
    except Exception as exc:  # safetensors raises its own error types for any bad layout
        raise ModelError(f"{name} is damaged: its tensors cannot be read ({type(exc).__name__})") from exc
    if meta.get("digest") != _digest(tensors, meta):
        raise ModelError(f"{name} was modified after it was written (digest mismatch); refusing to use it")
    try:
        weights = {k.removeprefix("weights."): v for k, v in tensors.items() if k.startswith("weights.")}
        mean, scale = tensors["scaler.mean"], tensors["scaler.scale"]
    except KeyError as exc:
        raise ModelError(f"{name} lacks tensor {exc.args[0]}; the file is damaged") from exc
    if len(mean) != len(meta["feature_names"]) or len(scale) != len(mean):
        raise ModelError(f"{name}: scaler and feature names disagree; the file is damaged")
    return ModelFile(weights=weights, scaler_mean=mean, scaler_scale=scale, meta=meta)
