"""Scoring state kept between runs (``netae score --state FILE``): open flows and the context window.

A sensor that writes rotated captures (``tcpdump -G 300``) and a cron job that scores each new
file would lose, at every file boundary, the flows that cross it (cut in two) and the context of
the flows after it (their hosts' recent past). The state keeps both:

- the packets of the flows still open at the end of the last capture, as ``PacketTable``
  columns: the next run assembles them with its own packets, so such a flow is finished by the
  next capture, or by the idle timeout counted from the next capture's first packet;
- the context window (``ContextTracker.window_state``): one summary row per flow that ended in
  the last two ``window_s``, and the time context coverage counts from.

Pieces of a capture scored one per run with the same state file give the flows and verdicts of
the whole capture (tests/test_state.py).

Format: a safetensors file (``safetensors.numpy``: a JSON header and raw little-endian arrays,
never a pickle). Its metadata holds one JSON document under ``netae-state``: format and version,
the digest of the model that wrote it (another model's state is refused: its flows and context
were built with other settings), the newest packet time seen, the context start, the sources
scored. Written atomically (``output.atomic_write``).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from netae import __version__
from netae.errors import InputError
from netae.modelfile import ModelFile
from netae.tables import PacketTable

__all__ = ["STATE_FORMAT", "STATE_VERSION", "ScoreState", "load_state", "save_state"]

STATE_FORMAT = "netae-state"
STATE_VERSION = 1
_MAX_HEADER_BYTES = 64 << 20
_PACKETS = "packets."
_CONTEXT = "context."


@dataclass(frozen=True, slots=True)
class ScoreState:
    """What one run hands the next: open flows' packets and the context window.

    ``max_ts_ns`` is the newest packet time seen (None before any); ``context`` is empty when the
    model has context off; ``file_start_us`` maps file id to the time context coverage counts from.
    """

    open_packets: PacketTable = field(default_factory=PacketTable.empty)
    max_ts_ns: int | None = None
    context: dict[str, np.ndarray] = field(default_factory=dict)
    file_start_us: dict[int, int] = field(default_factory=dict)
    sources: tuple[str, ...] = ()


def save_state(path: Path, state: ScoreState, *, model: ModelFile) -> None:
    """Write ``state`` for ``model`` atomically."""
    from safetensors.numpy import save

    from netae.files import atomic_write

    packets = state.open_packets
    tensors = {_PACKETS + f.name: np.ascontiguousarray(getattr(packets, f.name)) for f in fields(PacketTable)}
    tensors.update({_CONTEXT + name: np.ascontiguousarray(col) for name, col in state.context.items()})
    doc = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "netae_version": __version__,
        "written": datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model_digest": model.digest,
        "model_id": model.model_id,
        "max_ts_ns": state.max_ts_ns,
        "file_start_us": {str(k): int(v) for k, v in state.file_start_us.items()},
        "sources": list(state.sources),
        "open_packets": state.open_packets.n_packets,
        "context_flows": int(len(next(iter(state.context.values())))) if state.context else 0,
    }
    data = bytes(save(tensors, metadata={STATE_FORMAT: json.dumps(doc, sort_keys=True)}))
    with atomic_write(path, binary=True) as fh:
        fh.write(data)


def load_state(path: Path, *, model: ModelFile) -> ScoreState | None:
    """The state at ``path`` (None when the file does not exist yet: a first run).

    Anything else than a state of this format written for ``model`` is an ``InputError`` that
    says what to do.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"cannot read state file {path}: {exc.strerror or exc}") from exc
    doc = _header(raw, path)
    if doc.get("model_digest") != model.digest:
        raise InputError(
            f"state file {path} was written with another model (id {doc.get('model_id')!s}, not "
            f"{model.model_id}); its flows and context do not fit this one: give this model its own "
            "--state file, or delete the old one to start afresh"
        )
    try:
        from safetensors.numpy import load

        tensors = load(raw)
    except Exception as exc:  # safetensors raises its own error types for any bad layout
        raise InputError(f"state file {path} is damaged: its arrays cannot be read ({type(exc).__name__})") from exc
    return _state(tensors, doc, path)


def _header(raw: bytes, path: Path) -> dict[str, Any]:
    """The JSON document of a state file, checked for format and version (nothing is executed)."""
    bad = f"{path} is not a netae state file"
    if len(raw) < 8:
        raise InputError(f"{bad} (too short: {len(raw)} bytes)")
    (n_header,) = struct.unpack("<Q", raw[:8])
    if n_header < 2 or n_header > _MAX_HEADER_BYTES or 8 + n_header > len(raw) or raw[8:9] != b"{":
        raise InputError(f"{bad}, or it is truncated")
    try:
        doc = json.loads(json.loads(raw[8 : 8 + n_header].decode("utf-8"))["__metadata__"][STATE_FORMAT])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{bad} (no readable state metadata)") from exc
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT or not isinstance(doc.get("version"), int):
        raise InputError(f"{bad} (malformed state metadata)")
    if doc["version"] != STATE_VERSION:
        raise InputError(
            f"state file {path} has format version {doc['version']}; this netae ({__version__}) reads version "
            f"{STATE_VERSION}: delete it to start afresh"
        )
    return doc


def _state(tensors: dict[str, np.ndarray], doc: dict[str, Any], path: Path) -> ScoreState:
    try:
        # Optional columns a state written before them lacks (tunnel metadata) default to zeros.
        packets = PacketTable(
            **{f.name: tensors[_PACKETS + f.name] for f in fields(PacketTable) if _PACKETS + f.name in tensors}
        )
        max_ts = doc["max_ts_ns"]
        if max_ts is not None and not isinstance(max_ts, int):
            raise TypeError("max_ts_ns is not an integer")
        starts = {int(k): int(v) for k, v in dict(doc["file_start_us"]).items()}
        sources = tuple(str(s) for s in doc["sources"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"state file {path} is damaged ({type(exc).__name__}: {exc})") from exc
    context = {k.removeprefix(_CONTEXT): v for k, v in tensors.items() if k.startswith(_CONTEXT)}
    return ScoreState(open_packets=packets, max_ts_ns=max_ts, context=context, file_start_us=starts, sources=sources)
