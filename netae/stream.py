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
From a file a flow is reported only after ``idle_timeout_s`` passes in capture time with no
packet of it (or when the capture ends), so that flows close in the order they ended, which
context needs to be exact.

NOTE [live]: a live source (standard input, a pipe: ``is_live``) is read as data arrives (the
reader's ``live`` mode) in a thread, and alerts come within seconds of a flow's end:
- a TCP flow is reported ``flows.tcp_close_linger_s`` after FIN from both sides or a RST
  (``FlowAssembler.early_close``; NOTE [tcp close] in flows.py);
- when nothing arrives for ``TICK_S``, flows idle past the idle timeout by the wall clock (the
  newest packet time plus the wall time since it arrived) are closed too;
- closed flows are scored at least every ``LIVE_FLUSH_S``.
The flows are those of batch scoring. A flow closed early is scored before flows that ended
before it but still wait for their idle timeout (a DNS lookup before a TCP connection), so its
context lacks them: its context columns, and so its score, can differ from batch scoring's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from netae.capture import read_packets
from netae.config import Settings
from netae.context import ContextTracker
from netae.errors import CaptureError, InputError
from netae.flows import FlowAssembler
from netae.modelfile import ModelFile
from netae.pipeline import Featurized, _merge, featurize_closed, new_assembler
from netae.state import ScoreState, load_state, save_state
from netae.tables import Features, FlowTable, PacketTable, ScoreTable, SkipCounts
from netae.workflow import model_settings, require_flows, score_featurized

__all__ = [
    "STDIN_CHUNK_BYTES",
    "STREAM_AUTO_BYTES",
    "STREAM_CHUNK_BYTES",
    "StreamTotals",
    "is_live",
    "stream_scores",
    "wants_stream",
]

log = logging.getLogger(__name__)

STDIN_CHUNK_BYTES = 256 << 10  # small, so that a slow live capture still yields alerts promptly
STREAM_CHUNK_BYTES = 8 << 20  # files given with --stream
STREAM_AUTO_BYTES = 1 << 30  # files at least this large (in total) are streamed without --stream
FLUSH_S = 2.0  # score closed flows at least this often (wall seconds, checked as chunks arrive)
LIVE_FLUSH_S = 0.5  # ... on a live source (NOTE [live])
TICK_S = 0.5  # a live source that sends nothing for this long (wall seconds) is checked for expired flows
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


def is_live(source: object) -> bool:
    """Standard input, a pipe, a socket or a device: data that arrives while it is read."""
    if source == "-":
        return True
    if not isinstance(source, str | os.PathLike):
        return False  # a file object (tests, library callers): read as given
    try:
        return not stat.S_ISREG(os.stat(source).st_mode)
    except OSError:
        return False


def stream_scores(
    sources: list[str],
    *,
    model: ModelFile,
    threshold: float | None = None,
    device: str = "auto",
    totals: StreamTotals | None = None,
    chunk_bytes: int | None = None,
    flush_s: float | None = None,
    flush_packets: int = FLUSH_PACKETS,
    on_file: Callable[[str, SkipCounts], None] | None = None,
    state: Path | None = None,
    tick_s: float = TICK_S,
    engine: str = "auto",
) -> Iterator[ScoreTable]:
    """Score ``sources`` one after another, yielding one ScoreTable per batch of closed flows.

    Unreadable sources are recorded in ``totals.failures`` (as ``featurize_files`` does) and
    the others still scored; after the last source, input that gave no flow at all raises the
    same ``InputError`` as batch scoring. ``chunk_bytes`` defaults to ``STDIN_CHUNK_BYTES`` for
    live sources (``is_live``) and ``STREAM_CHUNK_BYTES`` for files. Closed flows are scored
    together once they hold ``flush_packets`` packets, ``flush_s`` wall seconds after the first
    of them closed (default ``LIVE_FLUSH_S`` for live sources, ``FLUSH_S`` for files), and at the
    end of each source. NOTE [live] says how live sources differ.

    With ``state`` (``netae score --state``) the sources are consecutive pieces of one capture:
    flows and context carry from one to the next and, through the state file, from the last
    source to the next run (``state.py``); a flow's ``file_id`` is the source holding its last
    packet (the first source for a flow that ended in the previous run).
    """
    settings = model_settings(model)
    t = StreamTotals() if totals is None else totals
    t.files = tuple(sources)
    batcher = _Batcher(model, threshold=threshold, device=device, totals=t, flush_packets=flush_packets, engine=engine)
    run = _Run(settings, model=model, state_path=state)
    for file_id, source in enumerate(sources):
        counts = SkipCounts()
        t.counts.append(counts)
        live = is_live(source)
        batcher.flush_s = flush_s if flush_s is not None else (LIVE_FLUSH_S if live else FLUSH_S)
        size = chunk_bytes or (STDIN_CHUNK_BYTES if live else STREAM_CHUNK_BYTES)
        asm, tracker = run.start(file_id, live=live)
        asm.on_warning = counts.warn  # the flood cap's warning goes with this source's
        if tracker is not None:
            tracker.on_warning = counts.warn
        chunks = read_packets(
            source, file_id=run.packet_file_id(file_id), counts=counts, chunk_bytes=size, live=live,
            tunnels=settings.tunnels,
        )  # fmt: skip
        try:
            for chunk, now_ns in _arrivals(chunks, tick_s, asm) if live else ((c, None) for c in chunks):
                run.saw(file_id, chunk, counts, source)
                table, closed = asm.push(PacketTable.empty() if chunk is None else chunk, now_ns=now_ns)
                batcher.add(table, closed, tracker, asm.pending_min_ts, relabel=run.relabel)
                if batcher.due():
                    yield from batcher.flush()
            if run.state_path is None:
                table, closed = asm.finish()
                batcher.add(table, closed, tracker, None)
        except CaptureError as exc:
            t.failures.append((source, str(exc)))
        yield from batcher.flush()
        if on_file is not None:
            on_file(source, counts)
    run.save(sources)
    if t.n_flows == 0 and not run.has_open_flows():
        empty = Featurized(
            packets=PacketTable.empty(),
            flows=FlowTable.empty(),
            features=Features(np.zeros((0, 0), np.float32), np.zeros(1, np.int64), ()),
            files=t.files,
            counts=tuple(t.counts),
            failures=tuple(t.failures),
        )
        require_flows(empty)


class _Run:
    """The assembler and context tracker of a run: one per source, or one carried through all
    sources and the state file when there is one (NOTE [state] in state.py)."""

    def __init__(self, settings: Settings, *, model: ModelFile, state_path: Path | None) -> None:
        self.settings = settings
        self.model = model
        self.state_path = state_path
        self.asm: FlowAssembler | None = None
        self.tracker: ContextTracker | None = None
        self.source_start_ns: list[int] = []

    def start(self, file_id: int, *, live: bool) -> tuple[FlowAssembler, ContextTracker | None]:
        if self.asm is None or self.state_path is None:
            self.asm = new_assembler(self.settings)
            self.tracker = ContextTracker(self.settings.context) if self.settings.context.enabled else None
            if self.state_path is not None:
                self._resume(load_state(self.state_path, model=self.model))
        self.asm.early_close = live  # NOTE [live]
        return self.asm, self.tracker

    def _resume(self, saved: ScoreState | None) -> None:
        if saved is None or self.asm is None:
            return
        self.asm.resume(saved.open_packets, max_ts=saved.max_ts_ns)
        if self.tracker is not None and saved.context:
            try:
                self.tracker.resume(saved.context, saved.file_start_us)
            except ValueError as exc:
                raise InputError(f"state file {self.state_path} is damaged: {exc}") from exc

    def packet_file_id(self, file_id: int) -> int:
        """With a state the sources are one capture: one file id for flow keys and context."""
        return 0 if self.state_path is not None else file_id

    def saw(self, file_id: int, chunk: PacketTable | None, counts: SkipCounts, source: str) -> None:
        """Note where each source starts; warn when it starts before what the state has seen."""
        if chunk is None or len(self.source_start_ns) != file_id:
            return
        start = int(chunk.ts_ns.min())
        self.source_start_ns.append(start)
        newest = self.asm.max_ts if self.asm is not None and self.state_path is not None else None
        if newest is not None and start < newest:
            counts.warn(
                f"{source} starts {(newest - start) / 1e9:.3f} s before the newest packet already scored with "
                f"--state {self.state_path}: score each capture once, in time order (flows near the boundary "
                "may be split)"
            )

    def relabel(self, flows: FlowTable) -> FlowTable:
        """The source of each flow (its last packet's) for output; context keys stay on file 0."""
        if self.state_path is None or not flows.n_flows or not self.source_start_ns:
            return flows
        src = np.searchsorted(np.asarray(self.source_start_ns), flows.last_ns, side="right") - 1
        return replace(flows, file_id=np.maximum(src, 0).astype(np.int32))

    def has_open_flows(self) -> bool:
        return self.state_path is not None and self.asm is not None and self.asm.open_packets().n_packets > 0

    def save(self, sources: list[str]) -> None:
        if self.state_path is None or self.asm is None:
            return
        context, starts = self.tracker.window_state() if self.tracker is not None else ({}, {})
        saved = ScoreState(
            open_packets=self.asm.open_packets(), max_ts_ns=self.asm.max_ts, context=context, file_start_us=starts,
            sources=tuple(sources),
        )  # fmt: skip
        save_state(self.state_path, saved, model=self.model)


_END = object()


def _arrivals(
    chunks: Iterator[PacketTable], tick_s: float, asm: FlowAssembler
) -> Iterator[tuple[PacketTable | None, int | None]]:
    """NOTE [live]: read ``chunks`` in a thread and yield ``(chunk, None)`` as they arrive
    (everything that arrived while the last one was processed, as one chunk), or, when nothing
    arrived for ``tick_s``, ``(None, now_ns)``: the newest packet time plus the wall time since it
    arrived, the clock ``FlowAssembler.expire`` closes idle flows by."""
    q: queue.Queue[tuple[Any, float]] = queue.Queue(maxsize=16)
    stop = threading.Event()

    def put(item: Any) -> None:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                q.put((item, time.monotonic()), timeout=0.2)
                return

    def read() -> None:
        try:
            for chunk in chunks:
                put(chunk)
            put(_END)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    threading.Thread(target=read, name="netae-reader", daemon=True).start()
    last = time.monotonic()
    try:
        while True:
            try:
                items = [q.get(timeout=tick_s)]
            except queue.Empty:
                if asm.max_ts is not None:
                    yield None, asm.max_ts + int((time.monotonic() - last) * 1e9)
                continue
            with contextlib.suppress(queue.Empty):
                while len(items) < q.maxsize:
                    items.append(q.get_nowait())
            tables = [item for item, _ in items if isinstance(item, PacketTable)]
            if tables:
                last = max(at for _, at in items)
                yield PacketTable.concat(tables), None
            for item, _ in items:
                if isinstance(item, BaseException):
                    raise item
                if item is _END:
                    return
    finally:
        stop.set()


class _Batcher:
    """Closed flows with their features, held until enough packets or time have gathered.

    Context must be computed as flows close (``ContextTracker`` needs closing order), so it is
    done in ``add``; only scoring waits, because one inference pass over many flows costs far
    less than many passes over few (each pass steps through its longest window).
    """

    def __init__(
        self, model: ModelFile, *, threshold: float | None, device: str, totals: StreamTotals, flush_packets: int,
        flush_s: float = 2.0, engine: str = "auto",
    ) -> None:  # fmt: skip
        self.model = model
        self.engine = engine
        self.threshold = threshold
        self.device = device
        self.totals = totals
        self.flush_s = flush_s
        self.flush_packets = flush_packets
        self.pieces: list[tuple[PacketTable, FlowTable, Features, dict[str, np.ndarray]]] = []
        self.n_packets = 0
        self.since = 0.0
        self.urgent = False

    def add(
        self, table: PacketTable, closed: FlowTable, tracker: ContextTracker | None, horizon_ns: int | None,
        relabel: Callable[[FlowTable], FlowTable] | None = None,
    ) -> None:  # fmt: skip
        """``relabel``: the flows as output (source files) once context is computed."""
        if closed.n_flows == 0:
            return
        packets, flows, features, context = featurize_closed(table, closed, tracker, horizon_ns)
        if relabel is not None:
            flows = relabel(flows)
        if not self.pieces:
            self.since = time.monotonic()
        self.pieces.append((packets, flows, features, context))
        self.n_packets += len(flows.order)
        self.urgent = self.urgent or bool(np.any(flows.agg_flows > 0))  # a flood: report it now

    def due(self) -> bool:
        return bool(self.pieces) and (
            self.urgent or self.n_packets >= self.flush_packets or time.monotonic() - self.since >= self.flush_s
        )

    def flush(self) -> Iterator[ScoreTable]:
        if not self.pieces:
            return
        pieces, self.pieces, self.n_packets, self.urgent = self.pieces, [], 0, False
        packets, flows = _merge([(p, f) for p, f, _, _ in pieces])
        values = np.concatenate([x.values for _, _, x, _ in pieces]) if len(pieces) > 1 else pieces[0][2].values
        features = Features(values=values, offsets=flows.offsets, names=pieces[0][2].names)
        context = {name: np.concatenate([c[name] for _, _, _, c in pieces]) for name in pieces[0][3]}
        data = Featurized(
            packets=packets, flows=flows, features=features, files=self.totals.files, counts=(), context=context
        )
        run = score_featurized(data, self.model, threshold=self.threshold, device=self.device, engine=self.engine)
        t = self.totals
        t.n_flows += run.table.n_flows
        t.n_anomalies += int(run.table.is_anomaly.sum())
        t.n_batches += 1
        t.threshold = run.table.threshold
        log.debug("stream batch %d: %d flows", t.n_batches, flows.n_flows)
        yield run.table
