"""Capture files to features: the stages every command shares, numpy only.

``featurize_files`` reads each capture in bounded chunks, assembles flows per file, computes
context and per-packet features, and keeps going past unreadable files (they are listed in
``failures``; the caller decides the exit status).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from netae.capture import read_packets
from netae.config import Settings
from netae.context import CONTEXT_FEATURES, ContextTracker, compute_context, flow_facts
from netae.errors import CaptureError, InputError
from netae.features import compute_features
from netae.flows import FlowAssembler, flow_key_hash
from netae.tables import (
    Features,
    FlowTable,
    PacketTable,
    SkipCounts,
    canonical_order,
    concat_flow_parts,
    reorder_flows,
)

__all__ = [
    "CAPTURE_SUFFIXES",
    "Featurized",
    "canonical_order",
    "expand_inputs",
    "featurize_files",
    "reorder_flows",
    "validation_mask",
]

log = logging.getLogger(__name__)

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".ntar", ".pcap.gz", ".pcapng.gz", ".cap.gz")


@dataclass(frozen=True, slots=True)
class Featurized:
    """Everything derived from a set of captures; ``flows.file_id`` indexes ``files``.

    ``context`` holds the raw (unscaled) per-flow context columns, model inputs and extras
    (``context.py``), for explanations; empty when context is off or features came from files.
    """

    packets: PacketTable
    flows: FlowTable
    features: Features
    files: tuple[str, ...]
    counts: tuple[SkipCounts, ...]
    failures: tuple[tuple[str, str], ...] = field(default=())
    context: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)


def expand_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Files as given, directories searched recursively for capture files; sorted per directory."""
    out: list[str] = []
    for raw in paths:
        p = str(raw)
        if p == "-":
            out.append(p)
            continue
        path = Path(p)
        if path.is_dir():
            found = sorted(str(f) for f in path.rglob("*") if f.is_file() and f.name.lower().endswith(CAPTURE_SUFFIXES))
            if not found:
                raise InputError(f"{p}: no capture files (.pcap, .pcapng, .cap, optionally .gz) in this directory")
            out.extend(found)
        elif path.exists():
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or directory")
    return out


def _merge(tables: list[tuple[PacketTable, FlowTable]]) -> tuple[PacketTable, FlowTable]:
    """Concatenate (packets, flows) pairs, shifting each flow's packet rows."""
    return concat_flow_parts(tables)


def new_assembler(
    settings: Settings, *, early_close: bool = False, on_warning: Callable[[str], None] | None = None
) -> FlowAssembler:
    """A FlowAssembler with the flow rules of ``settings`` (``early_close``: live streams)."""
    f = settings.flows
    return FlowAssembler(
        idle_timeout_s=f.idle_timeout_s, active_timeout_s=f.active_timeout_s,
        tcp_close_linger_s=f.tcp_close_linger_s, early_close=early_close, max_open_flows=f.max_open_flows,
        on_warning=on_warning,
    )  # fmt: skip


def assemble_file(
    source: str, *, file_id: int, settings: Settings, counts: SkipCounts, chunk_bytes: int = 64 << 20
) -> tuple[PacketTable, FlowTable]:
    """Read one capture in chunks and assemble its flows (chunked == one pass, NOTE [flow table]).

    Each chunk is pushed as it is read: the assembler keeps its state, so memory holds the open
    flows and the closed ones (the output), never the capture.
    """
    assembler = new_assembler(settings, on_warning=counts.warn)
    parts: list[tuple[PacketTable, FlowTable]] = []
    for chunk in read_packets(
        source, file_id=file_id, counts=counts, chunk_bytes=chunk_bytes, tunnels=settings.tunnels
    ):
        table, flows = assembler.push(chunk)
        if flows.n_flows:
            parts.append(_compact(table, flows))
    parts.append(assembler.finish())
    return _merge(parts)


def _compact(table: PacketTable, flows: FlowTable) -> tuple[PacketTable, FlowTable]:
    """Keep only the packets the flows use, so closed chunks hold no open flows' packets."""
    if len(flows.order) == table.n_packets:
        return table, flows
    keep = flows.order
    packets = table.take(keep)
    order = np.arange(len(keep), dtype=np.int64)
    return packets, FlowTable(**flows.column_dict(), order=order, offsets=flows.offsets, is_fwd=flows.is_fwd)


def featurize_closed(
    table: PacketTable, closed: FlowTable, tracker: ContextTracker | None, horizon_ns: int | None
) -> tuple[PacketTable, FlowTable, Features, dict[str, npt.NDArray[np.float32]]]:
    """Context and features of a batch of closed flows (streaming; ``tracker`` keeps the state)."""
    packets, flows = _compact(table, closed)
    facts = flow_facts(packets, flows)
    context = tracker.update(packets, flows, horizon_ns=horizon_ns, facts=facts) if tracker is not None else {}
    model_context = {name: context[name] for name in CONTEXT_FEATURES} if context else None
    return packets, flows, compute_features(packets, flows, context=model_context, facts=facts), context


def iter_featurized(
    source: str, *, file_id: int, settings: Settings, counts: SkipCounts, chunk_bytes: int = 64 << 20,
    batch_packets: int = 250_000,
) -> Iterator[tuple[PacketTable, FlowTable, Features, dict[str, npt.NDArray[np.float32]]]]:  # fmt: skip
    """Featurize one capture batch by batch as its flows close: memory holds the open flows, one
    batch and the context window, never the whole capture. Same values as ``featurize_files``
    (context is exact when streamed, NOTE in context.py); rows come in closing order."""
    assembler = new_assembler(settings, on_warning=counts.warn)
    tracker = ContextTracker(settings.context, on_warning=counts.warn) if settings.context.enabled else None
    pending: list[PacketTable] = []
    n_pending = 0
    for chunk in read_packets(
        source, file_id=file_id, counts=counts, chunk_bytes=chunk_bytes, tunnels=settings.tunnels
    ):
        pending.append(chunk)
        n_pending += chunk.n_packets
        if n_pending >= batch_packets:
            table, closed = assembler.push(PacketTable.concat(pending))
            pending.clear()
            n_pending = 0
            if closed.n_flows:
                yield featurize_closed(table, closed, tracker, assembler.pending_min_ts)
    if pending:
        table, closed = assembler.push(PacketTable.concat(pending))
        if closed.n_flows:
            yield featurize_closed(table, closed, tracker, assembler.pending_min_ts)
    table, closed = assembler.finish()
    if closed.n_flows:
        yield featurize_closed(table, closed, tracker, None)


def featurize_files(
    sources: list[str],
    *,
    settings: Settings,
    on_file: Callable[[str, SkipCounts], None] | None = None,
    chunk_bytes: int = 64 << 20,
) -> Featurized:
    """Read, assemble and featurize every source; unreadable files go to ``failures``."""
    parts: list[tuple[PacketTable, FlowTable]] = []
    counts_all: list[SkipCounts] = []
    failures: list[tuple[str, str]] = []
    for file_id, source in enumerate(sources):
        counts = SkipCounts()
        try:
            parts.append(
                assemble_file(source, file_id=file_id, settings=settings, counts=counts, chunk_bytes=chunk_bytes)
            )
        except CaptureError as exc:
            failures.append((source, str(exc)))
        counts_all.append(counts)
        if on_file is not None:
            on_file(source, counts)
    packets, flows = _merge(parts)
    # Flows in time order across files, so context sees each flow's past.
    if flows.n_flows:
        flows = _sort_flows(flows)
    facts = flow_facts(packets, flows)
    context = (
        compute_context(packets, flows, settings=settings.context, facts=facts) if settings.context.enabled else {}
    )
    model_context = {name: context[name] for name in CONTEXT_FEATURES} if context else None
    features = compute_features(packets, flows, context=model_context, facts=facts)
    return Featurized(
        packets=packets,
        flows=flows,
        features=features,
        files=tuple(sources),
        counts=tuple(counts_all),
        failures=tuple(failures),
        context=context,
    )


def _sort_flows(flows: FlowTable) -> FlowTable:
    rank = canonical_order(flows)
    if np.all(rank[1:] > rank[:-1]):
        return flows
    return reorder_flows(flows, rank)[0]


def validation_mask(flows: FlowTable, fraction: float) -> npt.NDArray[np.bool_]:
    """Deterministic validation split by a hash of each flow's key (DESIGN: fit 80 %, val 20 %)."""
    if flows.n_flows == 0:
        return np.zeros(0, dtype=bool)
    h = flow_key_hash(
        flows.src_hi, flows.src_lo, flows.dst_hi, flows.dst_lo,
        (flows.src_port.astype(np.uint64) << np.uint64(16)) | flows.dst_port, flows.proto, flows.first_ns,
    )  # fmt: skip
    return (h % np.uint64(1_000_000)).astype(np.float64) < fraction * 1_000_000
