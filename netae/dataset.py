"""Featurized flows on disk: Parquet files and sharded datasets (one shard per capture).

A Parquet file holds one row per flow: the flow columns of ``FlowTable`` (addresses as text),
``source_file``, and ``features``: the flow's per-packet feature rows flattened into one
``list<float32>`` (``n_packets * n_features`` values, row-major). The file's key-value metadata
holds ``netae.feature_names`` and ``netae.settings`` (flow and context settings, JSON), so a
model is only ever trained on features built with its own settings.

A sharded dataset is a directory with ``manifest.json`` (feature names, settings, and per shard:
file, source capture, flows, packets) and one ``*.parquet`` shard per capture, so a cluster job
can featurize captures independently and ``netae train DIR`` reads them shard by shard.
pyarrow is imported here only (like output.py, an I/O module).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netae.config import Settings
from netae.errors import ConfigError, InputError, printable
from netae.extras import require
from netae.pipeline import canonical_order, reorder_flows
from netae.tables import Features, FlowTable, format_ips, parse_ip

__all__ = [
    "MANIFEST",
    "Shard",
    "add_to_manifest",
    "next_shard_index",
    "is_dataset",
    "read_dataset",
    "read_parquet",
    "read_shard",
    "settings_key",
    "write_manifest",
    "write_parquet",
]

MANIFEST = "manifest.json"
_FLOW_INT_COLUMNS = (
    "src_port", "dst_port", "proto", "ip_version", "first_ns", "last_ns",
    "fwd_pkts", "bwd_pkts", "fwd_bytes", "bwd_bytes",
)  # fmt: skip


def settings_key(settings: Settings) -> dict[str, Any]:
    """The settings that change features: a dataset and a model must agree on them."""
    d = settings.to_dict()
    return {"flows": d["flows"], "context": d["context"]}


def _arrow_table(flows: FlowTable, features: Features, files: tuple[str, ...], settings: Settings) -> Any:
    """Flows and their feature sequences as one Arrow table (schema fixed: large lists)."""
    import pyarrow as pa

    n_feat = len(features.names)
    flat = pa.array(features.values.reshape(-1), type=pa.float32())
    cols: dict[str, Any] = {
        "src_ip": pa.array(format_ips(flows.src_hi, flows.src_lo), type=pa.string()),
        "dst_ip": pa.array(format_ips(flows.dst_hi, flows.dst_lo), type=pa.string()),
    }
    for name in _FLOW_INT_COLUMNS:
        cols[name] = pa.array(getattr(flows, name))
    names = [printable(f) for f in files]  # a name that is not UTF-8 cannot go into a Parquet string
    cols["source_file"] = pa.array([names[i] if names else "" for i in flows.file_id.tolist()], type=pa.string())
    cols["features"] = pa.LargeListArray.from_arrays(pa.array(features.offsets * n_feat, type=pa.int64()), flat)
    meta = {
        b"netae.feature_names": json.dumps(list(features.names)).encode(),
        b"netae.settings": json.dumps(settings_key(settings), sort_keys=True).encode(),
    }
    return pa.table(cols).replace_schema_metadata(meta)


def write_parquet(path: Path, flows: FlowTable, features: Features, files: tuple[str, ...], settings: Settings) -> None:
    """One Parquet file of flows with their feature sequences, written atomically."""
    with ParquetStream(path, files=files, settings=settings) as out:
        out.write(flows, features)


class ParquetStream:
    """Write a Parquet feature file batch by batch (one row group each), atomically.

    Memory holds one batch, not the file. Rows are in the order written; ``read_parquet`` lays
    flows out in the canonical order, so a file streamed in closing order reads back the same
    as one written at once.
    """

    def __init__(self, path: Path, *, files: tuple[str, ...], settings: Settings) -> None:
        self.path = path
        self.files = files
        self.settings = settings
        self.n_flows = 0
        self.n_packets = 0
        self._ctx: Any = None
        self._fh: Any = None
        self._writer: Any = None

    def __enter__(self) -> ParquetStream:
        from netae.files import atomic_write

        require("pyarrow", "writing Parquet feature files")
        self._ctx = atomic_write(self.path, binary=True)
        self._fh = self._ctx.__enter__()
        return self

    def write(self, flows: FlowTable, features: Features) -> None:
        import pyarrow.parquet as pq

        table = _arrow_table(flows, features, self.files, self.settings)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._fh, table.schema, compression="zstd")
        self._writer.write_table(table)
        self.n_flows += flows.n_flows
        self.n_packets += len(flows.order)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            if exc is None and self._writer is None:
                self._ctx.__exit__(InputError, InputError("no flows to write"), None)
                raise InputError(f"no flows to write to {self.path}")
            self._ctx.__exit__(exc_type, exc, tb)


@dataclass(frozen=True, slots=True)
class Shard:
    """Flows and features read back from one Parquet file (no packet table: not needed to train)."""

    flows: FlowTable
    features: Features
    settings: dict[str, Any]
    source_files: tuple[str, ...]


def read_parquet(path: Path) -> Shard:
    """Read a file written by ``write_parquet``; anything else is an ``InputError``."""
    require("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    meta = table.schema.metadata or {}
    try:
        names = tuple(json.loads(meta[b"netae.feature_names"]))
        settings = json.loads(meta[b"netae.settings"])
    except (KeyError, ValueError) as exc:
        raise InputError(
            f"{path}: not a netae feature file (no netae metadata); make one with netae featurize"
        ) from exc
    n = table.num_rows
    n_feat = len(names)
    feats = table.column("features").combine_chunks()
    values = np.asarray(feats.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, n_feat)
    offsets = (np.asarray(feats.offsets.to_numpy(), dtype=np.int64) // n_feat).astype(np.int64)
    src = [parse_ip(s) for s in table.column("src_ip").to_pylist()]
    dst = [parse_ip(s) for s in table.column("dst_ip").to_pylist()]
    sources = table.column("source_file").to_pylist()
    uniq = tuple(dict.fromkeys(sources))
    index = {s: i for i, s in enumerate(uniq)}
    cols = {name: table.column(name).to_numpy() for name in _FLOW_INT_COLUMNS}
    is_fwd_col = names.index("is_fwd") if "is_fwd" in names else None
    flows = FlowTable(
        src_hi=np.array([a for a, _ in src], dtype=np.uint64).reshape(n),
        src_lo=np.array([b for _, b in src], dtype=np.uint64).reshape(n),
        dst_hi=np.array([a for a, _ in dst], dtype=np.uint64).reshape(n),
        dst_lo=np.array([b for _, b in dst], dtype=np.uint64).reshape(n),
        src_port=cols["src_port"].astype(np.uint16),
        dst_port=cols["dst_port"].astype(np.uint16),
        proto=cols["proto"].astype(np.uint8),
        ip_version=cols["ip_version"].astype(np.uint8),
        first_ns=cols["first_ns"].astype(np.int64),
        last_ns=cols["last_ns"].astype(np.int64),
        fwd_pkts=cols["fwd_pkts"].astype(np.int64),
        bwd_pkts=cols["bwd_pkts"].astype(np.int64),
        fwd_bytes=cols["fwd_bytes"].astype(np.int64),
        bwd_bytes=cols["bwd_bytes"].astype(np.int64),
        file_id=np.array([index[s] for s in sources], dtype=np.int32).reshape(n),
        order=np.arange(len(values), dtype=np.int64),
        offsets=offsets,
        is_fwd=(values[:, is_fwd_col] > 0.5) if is_fwd_col is not None else np.ones(len(values), dtype=bool),
    )
    rank = canonical_order(flows)
    if np.any(rank[1:] < rank[:-1]):  # streamed files hold flows in closing order
        flows, idx = reorder_flows(flows, rank)
        values = values[idx]
        offsets = flows.offsets
        flows = FlowTable(
            **flows.column_dict(), order=np.arange(len(values), dtype=np.int64), offsets=offsets, is_fwd=flows.is_fwd
        )
    return Shard(flows=flows, features=Features(values=values, offsets=offsets, names=names), settings=settings,
                 source_files=uniq)  # fmt: skip


def is_dataset(path: str | os.PathLike[str]) -> bool:
    """A Parquet feature file, or a directory holding a dataset manifest or ``*.parquet`` shards."""
    p = Path(path)
    if p.is_file():
        return p.suffix == ".parquet"
    return p.is_dir() and ((p / MANIFEST).is_file() or any(p.glob("*.parquet")))


def write_manifest(
    directory: Path, shards: list[dict[str, Any]], *, names: tuple[str, ...], settings: Settings
) -> None:
    from netae.files import atomic_write

    doc = {"format": "netae-dataset", "version": 1, "feature_names": list(names), "settings": settings_key(settings),
           "shards": shards}  # fmt: skip
    with atomic_write(directory / MANIFEST) as fh:
        fh.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _read_manifest(directory: Path) -> dict[str, Any]:
    try:
        doc = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc["shards"], list):
            raise TypeError("no list of shards")
        return doc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{directory}: unreadable dataset manifest ({exc})") from exc


def next_shard_index(directory: Path, *, settings: Settings) -> int:
    """Where new shards of a dataset directory start numbering; refuses a dataset of other settings.

    Featurizing more captures into an existing dataset adds shards beside the old ones (never
    over them), so the first index is past every ``NNNNN-*.parquet`` already there.
    """
    if (directory / MANIFEST).exists():
        doc = _read_manifest(directory)
        if doc.get("settings") != settings_key(settings):
            raise ConfigError(
                f"{directory} holds a dataset featurized with other flow/context settings "
                f"({json.dumps(doc.get('settings'), sort_keys=True)}); use another directory or the same --config"
            )
    taken = [int(p.name[:5]) for p in directory.glob("*.parquet") if p.name[:5].isdigit() and p.name[5:6] == "-"]
    return max(taken, default=-1) + 1


def add_to_manifest(
    directory: Path, shards: list[dict[str, Any]], *, names: tuple[str, ...], settings: Settings
) -> None:
    """Write the manifest with ``shards`` added to those it listed, and to shards written beside it.

    Nothing already in the directory is dropped: shards another job wrote without a manifest are
    listed too (``flows``/``packets`` unknown: null). Other feature names are refused.
    """
    old: list[dict[str, Any]] = []
    if (directory / MANIFEST).exists():
        doc = _read_manifest(directory)
        if doc.get("feature_names") != list(names):
            raise ConfigError(f"{directory} holds a dataset with other feature names; use another directory")
        old = list(doc["shards"])
    listed = {s.get("file") for s in old} | {s["file"] for s in shards}
    loose = [
        {"file": p.name, "source": None, "flows": None, "packets": None}
        for p in sorted(directory.glob("*.parquet"))
        if p.name not in listed
    ]
    write_manifest(directory, old + loose + shards, names=names, settings=settings)


def dataset_files(path: str | os.PathLike[str]) -> list[Path]:
    """The Parquet files of a feature file or dataset directory, in manifest order.

    A directory without a manifest (shards written by separate jobs) gives its ``*.parquet``
    files sorted by name.
    """
    p = Path(path)
    if p.is_file():
        return [p]
    if not (p / MANIFEST).exists():
        return sorted(p.glob("*.parquet"))
    try:
        return [p / s["file"] for s in _read_manifest(p)["shards"]]
    except (KeyError, TypeError) as exc:
        raise InputError(f"{p}: unreadable dataset manifest ({exc})") from exc


def read_shard(path: Path, *, settings: Settings) -> Shard:
    """One feature file, refused when it was featurized with other flow/context settings."""
    shard = read_parquet(path)
    want = settings_key(settings)
    if shard.settings != want:
        raise ConfigError(
            f"{path} was featurized with other flow/context settings than this training run "
            f"({json.dumps(shard.settings, sort_keys=True)}); featurize again or pass the same --config"
        )
    return shard


def read_dataset(paths: list[str], *, settings: Settings) -> Iterator[Shard]:
    """Stream the shards of feature files / dataset directories, checking their settings."""
    for path in paths:
        for f in dataset_files(path):
            yield read_shard(f, settings=settings)
