"""Streaming scoring: score a long or endless capture as its flows expire, in bounded memory.

``stream_scores`` reads each capture in chunks (``read_packets``), pushes them through a
``FlowAssembler``, and for every batch of flows that can no longer grow (idle timeout passed)
computes context (``ContextTracker``, exact when fed closed flows in closing order), features,
scaling and scores, and yields a ``ScoreTable`` for that batch at once. Memory holds the open
flows' packets and one window of context state, not the capture.

NOTE [stream == batch]: the flows and their scores equal those of ``workflow.score_captures`` on
the same captures (up to float rounding between inference batches), because assembly, context
and features are the same functions fed the same flows; the tests check it. Only the order of
the output differs: flows come out as they close (by first packet time within a batch).
A flow is reported only after ``idle_timeout_s`` passes in capture time with no packet of it
(or when the capture ends), so on a live stream an alert comes at least that long after the
flow's last packet.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from netae.capture import read_packets
from netae.context import ContextTracker
from netae.errors import CaptureError
from netae.flows import FlowAssembler
from netae.modelfile import ModelFile
from netae.pipeline import Featurized, _merge, featurize_closed
from netae.tables import Features, FlowTable, PacketTable, ScoreTable, SkipCounts
from netae.workflow import model_settings, require_flows, score_featurized

__all__ = [
    "STDIN_CHUNK_BYTES",
    "STREAM_AUTO_BYTES",
    "STREAM_CHUNK_BYTES",
    "StreamTotals",
    "stream_scores",
    "wants_stream",
]

log = logging.getLogger(__name__)

STDIN_CHUNK_BYTES = 256 << 10  # small, so that a slow live capture still yields alerts promptly
STREAM_CHUNK_BYTES = 8 << 20  # files given with --stream
STREAM_AUTO_BYTES = 1 << 30  # files at least this large (in total) are streamed without --stream
FLUSH_S = 2.0  # score closed flows at least this often (wall seconds, checked as chunks arrive)
FLUSH_PACKETS = 1 << 18  # ... or as soon as they hold this many packets


@dataclass(slots=True)
class StreamTotals:
    """What a streaming run has seen so far: flows, anomalies, per-file counts and failures."""

    files: tuple[str, ...] = ()
    n_flows: int = 0
    n_anomalies: int = 0
    n_batches: int = 0
    threshold: float = float("nan")
    counts: list[SkipCounts] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def wants_stream(sources: list[str], *, auto_bytes: int = STREAM_AUTO_BYTES) -> bool:
    """Standard input is always streamed; files when they hold at least ``auto_bytes`` together."""
    if "-" in sources:
        return True
    total = 0
    for s in sources:
        try:
            total += os.path.getsize(s)
        except OSError:
            continue
    return total >= auto_bytes


def stream_scores(
    sources: list[str],
    *,
    model: ModelFile,
    threshold: float | None = None,
    device: str = "auto",
    totals: StreamTotals | None = None,
    chunk_bytes: int | None = None,
    flush_s: float = FLUSH_S,
    flush_packets: int = FLUSH_PACKETS,
    on_file: Callable[[str, SkipCounts], None] | None = None,
) -> Iterator[ScoreTable]:
    """Score ``sources`` one after another, yielding one ScoreTable per batch of closed flows.

    Unreadable sources are recorded in ``totals.failures`` (as ``featurize_files`` does) and
    the others still scored; after the last source, input that gave no flow at all raises the
    same ``InputError`` as batch scoring. ``chunk_bytes`` defaults to ``STDIN_CHUNK_BYTES`` for
    ``-`` and ``STREAM_CHUNK_BYTES`` for files. Closed flows are scored together once they hold
    ``flush_packets`` packets, ``flush_s`` wall seconds after the first of them closed (checked
    when a chunk arrives), and at the end of each source.
    """
    settings = model_settings(model)
    t = StreamTotals() if totals is None else totals
    t.files = tuple(sources)
    batcher = _Batcher(
        model, threshold=threshold, device=device, totals=t, flush_s=flush_s, flush_packets=flush_packets
    )
    for file_id, source in enumerate(sources):
        counts = SkipCounts()
        t.counts.append(counts)
        size = chunk_bytes or (STDIN_CHUNK_BYTES if source == "-" else STREAM_CHUNK_BYTES)
        asm = FlowAssembler(
            idle_timeout_s=settings.flows.idle_timeout_s, active_timeout_s=settings.flows.active_timeout_s
        )
        tracker = ContextTracker(settings.context) if settings.context.enabled else None
        try:
            for chunk in read_packets(
                source, file_id=file_id, counts=counts, chunk_bytes=size, tunnels=settings.tunnels
            ):
                table, closed = asm.push(chunk)
                batcher.add(table, closed, tracker, asm.pending_min_ts)
                if batcher.due():
                    yield from batcher.flush()
            table, closed = asm.finish()
            batcher.add(table, closed, tracker, None)
        except CaptureError as exc:
            t.failures.append((source, str(exc)))
        yield from batcher.flush()
        if on_file is not None:
            on_file(source, counts)
    if t.n_flows == 0:
        empty = Featurized(
            packets=PacketTable.empty(),
            flows=FlowTable.empty(),
            features=Features(np.zeros((0, 0), np.float32), np.zeros(1, np.int64), ()),
            files=t.files,
            counts=tuple(t.counts),
            failures=tuple(t.failures),
        )
        require_flows(empty)


class _Batcher:
    """Closed flows with their features, held until enough packets or time have gathered.

    Context must be computed as flows close (``ContextTracker`` needs closing order), so it is
    done in ``add``; only scoring waits, because one inference pass over many flows costs far
    less than many passes over few (each pass steps through its longest window).
    """

    def __init__(
        self, model: ModelFile, *, threshold: float | None, device: str, totals: StreamTotals,
        flush_s: float, flush_packets: int,
    ) -> None:  # fmt: skip
        self.model = model
        self.threshold = threshold
        self.device = device
        self.totals = totals
        self.flush_s = flush_s
        self.flush_packets = flush_packets
        self.pieces: list[tuple[PacketTable, FlowTable, Features, dict[str, np.ndarray]]] = []
        self.n_packets = 0
        self.since = 0.0

    def add(
        self, table: PacketTable, closed: FlowTable, tracker: ContextTracker | None, horizon_ns: int | None
    ) -> None:
        if closed.n_flows == 0:
            return
        packets, flows, features, context = featurize_closed(table, closed, tracker, horizon_ns)
        if not self.pieces:
            self.since = time.monotonic()
        self.pieces.append((packets, flows, features, context))
        self.n_packets += len(flows.order)

    def due(self) -> bool:
        return bool(self.pieces) and (
            self.n_packets >= self.flush_packets or time.monotonic() - self.since >= self.flush_s
        )

    def flush(self) -> Iterator[ScoreTable]:
        if not self.pieces:
            return
        pieces, self.pieces, self.n_packets = self.pieces, [], 0
        packets, flows = _merge([(p, f) for p, f, _, _ in pieces])
        values = np.concatenate([x.values for _, _, x, _ in pieces]) if len(pieces) > 1 else pieces[0][2].values
        features = Features(values=values, offsets=flows.offsets, names=pieces[0][2].names)
        context = {name: np.concatenate([c[name] for _, _, _, c in pieces]) for name in pieces[0][3]}
        data = Featurized(
            packets=packets, flows=flows, features=features, files=self.totals.files, counts=(), context=context
        )
        run = score_featurized(data, self.model, threshold=self.threshold, device=self.device)
        t = self.totals
        t.n_flows += run.table.n_flows
        t.n_anomalies += int(run.table.is_anomaly.sum())
        t.n_batches += 1
        t.threshold = run.table.threshold
        log.debug("stream batch %d: %d flows", t.n_batches, flows.n_flows)
        yield run.table
