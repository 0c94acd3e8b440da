"""Writers for scored flows: table (people), CSV and JSON lines (programs, SIEMs); atomic files.

Column names are public API (CHANGELOG on change). CSV keeps flat columns; JSON lines follow the
Elastic Common Schema with netae's own fields under ``netae``. Both are documented in README.md.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from rich.markup import escape

from netae.capture.tunnels import tunnel_documents, tunnel_texts
from netae.errors import OutputError, printable
from netae.files import atomic_write, in_place, target_kind
from netae.protocols import ICMP_PROTOCOLS, PORTED, PROTOCOL_NAMES
from netae.tables import FlowTable, ScoreTable, format_ip, format_ips

if TYPE_CHECKING:
    from netae.incidents import Incidents

__all__ = [
    "CSV_COLUMNS",
    "ECS_VERSION",
    "GROUP_BY",
    "GROUP_CSV_COLUMNS",
    "INCIDENT_CSV_COLUMNS",
    "WRITERS",
    "LineAppender",
    "append_lines",
    "FlowGroups",
    "group_documents",
    "group_flows",
    "incident_ids",
    "render_incidents",
    "render_groups",
    "select_groups",
    "atomic_write",
    "community_id",
    "csv_text",
    "is_whole_record",
    "csv_rows",
    "ecs_documents",
    "select_rows",
]

log = logging.getLogger(__name__)

ECS_VERSION = "8.11.0"

CSV_COLUMNS = (
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "protocol",
    "first_seen",
    "last_seen",
    "duration_s",
    "packets",
    "bytes",
    "src_packets",
    "dst_packets",
    "src_bytes",
    "dst_bytes",
    "score",
    "threshold",
    "is_anomaly",
    "source_file",
    "community_id",
    "worst_packets",
    "top_features",
    "explanation",
    "tunnel",
    "incident",
)

_TRANSPORT = PROTOCOL_NAMES

# Community ID v1: ICMP request/reply counterparts (types), per the spec.
_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130}
_ICMP6_PAIRS.update({139: 140, 140: 139, 144: 145, 145: 144})


_TAIL_BYTES = 16 << 20


class LineAppender:
    """Appends whole lines to an ``O_APPEND`` file descriptor: one ``write()`` per line.

    Concurrent appenders thus interleave whole lines only (the kernel appends each write at the
    end, under the inode lock), and a run killed mid-write can tear at most the line being
    written, which the next run repairs (``_repair_last_line``). ``flush`` fsyncs a regular
    file. ``had_lines`` says whether the file held lines before (a CSV header is not repeated).
    """

    def __init__(self, fd: int, *, name: str, had_lines: bool, regular: bool) -> None:
        self._fd = fd
        self._name = name
        self._regular = regular
        self.had_lines = had_lines

    def write(self, text: str) -> None:
        raw = text.encode("utf-8", "surrogateescape")
        view = memoryview(raw)
        start = 0
        while start < len(raw):
            end = raw.find(b"\n", start) + 1 or len(raw)
            self._write_all(view[start:end])
            start = end

    def _write_all(self, chunk: memoryview) -> None:
        try:
            while chunk:
                chunk = chunk[os.write(self._fd, chunk) :]
        except OSError as exc:
            raise OutputError(f"cannot write {self._name}: {exc.strerror}") from exc

    def flush(self) -> None:
        if self._regular:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise OutputError(f"cannot write {self._name}: {exc.strerror}") from exc


class _StdoutLines(LineAppender):
    """``--append -o -``: whole lines to standard output, through ``sys.stdout`` (its buffer first)."""

    def write(self, text: str) -> None:
        sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def is_whole_record(line: bytes, fmt: str) -> bool:
    """Whether a last line without its newline is a complete record (kept) or torn (cut).

    JSON lines: a JSON object that parses. CSV: a row with every column of the flow table.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if fmt == "jsonl":
        try:
            return isinstance(json.loads(text), dict)
        except ValueError:
            return False
    rows = list(csv.reader(io.StringIO(text)))
    return len(rows) == 1 and len(rows[0]) in (len(CSV_COLUMNS), len(GROUP_CSV_COLUMNS))


def _repair_last_line(fd: int, name: str, fmt: str) -> None:
    """Give a regular file's last line its newline, or cut it when it is a torn record.

    In place (ftruncate or one appended byte): the inode, and what a log shipper has read of
    it, stay as they are. Held under an exclusive lock so two appenders starting together agree.
    """
    size = os.fstat(fd).st_size
    if not size:
        return
    tail = os.pread(fd, min(size, _TAIL_BYTES), size - min(size, _TAIL_BYTES)) if _readable(fd) else b""
    if not tail or tail.endswith(b"\n"):
        return
    cut = tail.rfind(b"\n") + 1
    if cut == 0 and size > len(tail):
        raise OutputError(f"cannot append to {name}: its last line is longer than {_TAIL_BYTES >> 20} MiB")
    last = tail[cut:]
    if is_whole_record(last, fmt):
        os.write(fd, b"\n")
        return
    os.ftruncate(fd, size - len(last))
    log.warning("%s: cut a torn last line of %d bytes (left by an interrupted run)", name, len(last))


def _open_append(target: Path, name: str, mode: int) -> int:
    try:
        return os.open(target, mode | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputError(f"cannot write {name}: {exc.strerror}") from exc


def _readable(fd: int) -> bool:
    return (fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE) == os.O_RDWR


@contextlib.contextmanager
def append_lines(path: str | os.PathLike[str], *, fmt: str = "jsonl", header: str = "") -> Iterator[LineAppender]:
    """Open ``path`` to append whole lines with ``O_APPEND`` (``--append``): same inode, new bytes only.

    A regular file's last line without a newline is repaired first (``_repair_last_line``), and an
    empty one gets ``header`` (a CSV header line), both under a lock, so that two runs starting
    together write one header. A FIFO, device or socket is written as it is; ``-`` is standard
    output.
    """
    target = Path(path)
    name = printable(target)
    kind = target_kind(target)
    if kind == "stdout":
        yield _StdoutLines(-1, name="standard output", had_lines=False, regular=False)
        return
    if kind == "special":
        with in_place(target, binary=True) as raw:
            yield LineAppender(raw.fileno(), name=name, had_lines=False, regular=False)
        return
    try:
        fd = os.open(target, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    except PermissionError:  # a write-only log: append without the repair, which must read
        fd = _open_append(target, name, os.O_WRONLY)
    except OSError as exc:
        raise OutputError(f"cannot write {name}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            _repair_last_line(fd, name, fmt)
            if header and not os.fstat(fd).st_size:
                os.write(fd, header.encode("utf-8"))
        except OSError as exc:
            raise OutputError(f"cannot repair {name}: {exc.strerror}") from exc
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        yield LineAppender(fd, name=name, had_lines=os.fstat(fd).st_size > 0, regular=True)
    finally:
        os.close(fd)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """A text cell made safe for a spreadsheet: controls escaped, a formula start neutralised.

    OWASP's advice against CSV injection: a cell that begins with ``= + - @``, a tab or a carriage
    return gets a leading single quote. Only text cells go through here; numbers stay numbers.
    """
    text = printable(value)
    return "'" + text if value.startswith(_FORMULA_START) else text


def finite_or_none(value: float, digits: int = 8) -> float | None:
    """A float for JSON: rounded, or None (``null``) when not finite; strict parsers reject NaN."""
    return round(value, digits) if math.isfinite(value) else None


def _addr_bytes(hi: int, lo: int) -> bytes:
    if hi == 0 and (lo >> 32) == 0xFFFF:
        return struct.pack(">I", lo & 0xFFFFFFFF)
    return struct.pack(">QQ", hi, lo)


def community_id(src: bytes, dst: bytes, proto: int, sport: int | None, dport: int | None, *, seed: int = 0) -> str:
    """Community ID v1 of a flow (corelight/community-id-spec); ICMP gives type/code as ports."""
    one_way = False
    if proto in ICMP_PROTOCOLS and sport is not None:
        pairs = _ICMP4_PAIRS if proto == 1 else _ICMP6_PAIRS
        icmp_type, code = sport, dport
        if icmp_type in pairs:
            sport, dport = icmp_type, pairs[icmp_type]
        else:
            sport, dport = icmp_type, code
            one_way = True
    if not one_way and not (src < dst or (src == dst and (sport or 0) < (dport or 0))):
        src, dst, sport, dport = dst, src, dport, sport
    h = hashlib.sha1(struct.pack(">H", seed) + src + dst + struct.pack(">BB", proto, 0))
    if sport is not None and dport is not None:
        h.update(struct.pack(">HH", sport, dport))
    return "1:" + base64.b64encode(h.digest()).decode("ascii")


def _iso(ts_ns: int) -> str:
    dt = datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ts_ns % 1_000_000_000) // 1000:06d}Z"


def select_rows(table: ScoreTable, *, include_all: bool, by_score: bool = False) -> npt.NDArray[np.int64]:
    """Rows to emit: anomalies only unless ``include_all``; by time, or by score (highest first)."""
    rows = np.arange(table.n_flows) if include_all else np.flatnonzero(table.is_anomaly)
    if by_score:
        return rows[np.argsort(-table.score[rows], kind="stable")]
    f = table.flows
    return rows[np.lexsort((f.file_id[rows], f.first_ns[rows]))]


class _Row:
    """Values of one flow, shared by the CSV and JSON writers (computed once per emitted row)."""

    __slots__ = ("i", "t", "src", "dst", "sport", "dport", "proto", "has_ports")

    def __init__(self, t: ScoreTable, i: int) -> None:
        f = t.flows
        self.t, self.i = t, i
        self.src = (int(f.src_hi[i]), int(f.src_lo[i]))
        self.dst = (int(f.dst_hi[i]), int(f.dst_lo[i]))
        self.sport, self.dport, self.proto = int(f.src_port[i]), int(f.dst_port[i]), int(f.proto[i])
        self.has_ports = self.proto in (1, 6, 17, 58, 132)

    def community_id(self) -> str:
        return community_id(
            _addr_bytes(*self.src),
            _addr_bytes(*self.dst),
            self.proto,
            self.sport if self.has_ports else None,
            self.dport if self.has_ports else None,
        )

    def top_features(self) -> list[str]:
        return [self.t.feature_names[int(k)] for k in self.t.top_features[self.i] if k >= 0]

    def explanation(self) -> str:
        return self.t.explanations[self.i] if self.t.explanations else ""


def iso_times(ts_ns: npt.NDArray[np.int64]) -> list[str]:
    """ISO 8601 UTC strings with microseconds, vectorised."""
    text = np.datetime_as_string(ts_ns.astype("datetime64[ns]").astype("datetime64[us]"), unit="us")
    return [t + "Z" for t in text.tolist()]


def community_ids(table: ScoreTable, rows: npt.NDArray[np.int64]) -> list[str]:
    """Community ID of each selected flow (one SHA-1 each)."""
    out = []
    for i in rows.tolist():
        r = _Row(table, i)
        out.append(r.community_id())
    return out


def _worst_strings(table: ScoreTable, rows: npt.NDArray[np.int64]) -> list[str]:
    """``index:direction:ip_len:error`` of each flow's worst packets, ``;``-joined (vectorised parts)."""
    idx = table.worst_idx[rows]
    parts = []
    for j in range(idx.shape[1]):
        col = np.char.add(
            np.char.add(np.char.add(idx[:, j].astype(str), np.where(table.worst_is_fwd[rows, j], ":fwd:", ":bwd:")),
                        np.char.add(table.worst_ip_len[rows, j].astype(str), ":")),
            np.array([f"{e:.4g}" for e in table.worst_error[rows, j].tolist()], dtype=object).astype(str),
        )  # fmt: skip
        parts.append(np.where(idx[:, j] >= 0, col, ""))
    out = []
    for items in zip(*[p.tolist() for p in parts], strict=True) if parts else []:
        out.append(";".join(x for x in items if x))
    return out if parts else [""] * len(rows)


def csv_rows(table: ScoreTable, rows: npt.NDArray[np.int64]) -> Iterator[list[Any]]:
    """The CSV rows of the selected flows; columns are computed in bulk, then zipped."""
    f = table.flows
    first, last = f.first_ns[rows], f.last_ns[rows]
    pk_f, pk_b = f.fwd_pkts[rows], f.bwd_pkts[rows]
    by_f, by_b = f.fwd_bytes[rows], f.bwd_bytes[rows]
    names = table.feature_names
    top = [";".join(names[k] for k in ks if k >= 0) for ks in table.top_features[rows].tolist()]
    threshold = f"{table.threshold:.6g}"
    safe_files = [csv_text(name) for name in table.files]
    files = [safe_files[k] if safe_files else "" for k in f.file_id[rows].tolist()]
    expl = [csv_text(table.explanations[i]) for i in rows.tolist()] if table.explanations else [""] * len(rows)
    columns = [
        format_ips(f.src_hi[rows], f.src_lo[rows]),
        f.src_port[rows].tolist(),
        format_ips(f.dst_hi[rows], f.dst_lo[rows]),
        f.dst_port[rows].tolist(),
        f.proto[rows].tolist(),
        [f"{x:.6f}" for x in (first / 1e9).tolist()],
        [f"{x:.6f}" for x in (last / 1e9).tolist()],
        [f"{x:.6f}" for x in ((last - first) / 1e9).tolist()],
        (pk_f + pk_b).tolist(),
        (by_f + by_b).tolist(),
        pk_f.tolist(),
        pk_b.tolist(),
        by_f.tolist(),
        by_b.tolist(),
        [f"{x:.6g}" for x in table.score[rows].tolist()],
        [threshold] * len(rows),
        np.where(table.is_anomaly[rows], "true", "false").tolist(),
        files,
        community_ids(table, rows),
        _worst_strings(table, rows),
        top,
        expl,
        tunnel_texts(*_tunnel_args(f, rows)),
        incident_ids(table, rows),
    ]
    for row in zip(*columns, strict=True):
        yield list(row)


def _tunnel_args(f: FlowTable, rows: npt.NDArray[np.int64]) -> tuple[Any, Any, Any, Any]:
    """The tunnel columns of the selected flows, for ``tunnel_texts``/``tunnel_documents``."""
    return (f.tunnel_key[rows], f.tunnel_id[rows], (f.outer_src_hi[rows], f.outer_src_lo[rows]),
            (f.outer_dst_hi[rows], f.outer_dst_lo[rows]))  # fmt: skip


def risk_norm(score: float, threshold: float) -> float:
    """0-100: 50 at the threshold, approaching 100 far above it."""
    if not (math.isfinite(score) and math.isfinite(threshold)) or threshold <= 0:
        return 100.0
    ratio = score / threshold
    return round(100.0 * ratio / (1.0 + ratio), 2)


def _ecs_head(
    first: int,
    last: int,
    *,
    anomalous: bool,
    score: float,
    threshold: float,
    dataset: str,
    first_iso: str | None = None,
    last_iso: str | None = None,
) -> dict[str, Any]:
    """The ECS ``@timestamp``, ``ecs`` and ``event`` fields shared by flow and group alerts.

    ``first_iso``/``last_iso``: the times already formatted (``iso_times``), when done in bulk.
    """
    start = first_iso if first_iso is not None else _iso(first)
    return {
        "@timestamp": start,
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "alert" if anomalous else "event",
            "category": ["network", "intrusion_detection"],
            "type": ["connection", "info"],
            "module": "netae",
            "dataset": dataset,
            "start": start,
            "end": last_iso if last_iso is not None else _iso(last),
            "duration": last - first,
            "risk_score": finite_or_none(score),
            "risk_score_norm": risk_norm(score, threshold),
        },
    }


def ecs_documents(table: ScoreTable, rows: npt.NDArray[np.int64]) -> Iterator[dict[str, Any]]:
    """One ECS document per selected flow; the columns are formatted in bulk first (as for CSV)."""
    f = table.flows
    first_ns, last_ns = f.first_ns[rows], f.last_ns[rows]
    first_iso, last_iso = iso_times(first_ns), iso_times(last_ns)
    n_worst = table.worst_idx.shape[1]
    worst_iso = iso_times(table.worst_ts_ns[rows].reshape(-1))
    columns = zip(
        rows.tolist(),
        first_ns.tolist(),
        last_ns.tolist(),
        first_iso,
        last_iso,
        format_ips(f.src_hi[rows], f.src_lo[rows]),
        format_ips(f.dst_hi[rows], f.dst_lo[rows]),
        f.src_port[rows].tolist(),
        f.dst_port[rows].tolist(),
        f.proto[rows].tolist(),
        f.ip_version[rows].tolist(),
        f.fwd_pkts[rows].tolist(),
        f.bwd_pkts[rows].tolist(),
        f.fwd_bytes[rows].tolist(),
        f.bwd_bytes[rows].tolist(),
        table.score[rows].tolist(),
        table.is_anomaly[rows].tolist(),
        f.file_id[rows].tolist(),
        community_ids(table, rows),
        table.worst_idx[rows].tolist(),
        table.worst_is_fwd[rows].tolist(),
        table.worst_ip_len[rows].tolist(),
        table.worst_error[rows].tolist(),
        table.top_features[rows].tolist(),
        strict=True,
    )
    names = table.feature_names
    threshold = finite_or_none(table.threshold)
    safe_files = [printable(name) for name in table.files]
    tunnels = tunnel_documents(*_tunnel_args(f, rows))
    inc_ids, inc_ranks = incident_ids(table, rows), incident_ranks(table, rows)
    for n, (i, first, last, t0, t1, src_ip, dst_ip, sport, dport, proto, ipv, pf, pb, bf, bb, score, anomalous,
            file_id, cid, w_idx, w_fwd, w_len, w_err, top) in enumerate(columns):  # fmt: skip
        source: dict[str, Any] = {"ip": src_ip, "packets": pf, "bytes": bf}
        destination: dict[str, Any] = {"ip": dst_ip, "packets": pb, "bytes": bb}
        if proto in PORTED:
            source["port"], destination["port"] = sport, dport
        network: dict[str, Any] = {
            "transport": _TRANSPORT.get(proto, str(proto)),
            "type": "ipv4" if ipv == 4 else "ipv6",
            "iana_number": str(proto),
            "community_id": cid,
            "packets": pf + pb,
            "bytes": bf + bb,
        }
        worst = []
        for j in range(n_worst):
            if w_idx[j] < 0:
                break
            worst.append(
                {
                    "index": w_idx[j],
                    "timestamp": worst_iso[n * n_worst + j],
                    "direction": "fwd" if w_fwd[j] else "bwd",
                    "ip_len": w_len[j],
                    "error": finite_or_none(w_err[j], 6),
                }
            )
        netae: dict[str, Any] = {
            "score": finite_or_none(score),
            "threshold": threshold,
            "is_anomaly": anomalous,
            "model_id": table.model_id,
            "source_file": safe_files[file_id] if safe_files else "",
            "worst_packets": worst,
            "top_features": [names[k] for k in top if k >= 0],
        }
        if proto in ICMP_PROTOCOLS:
            netae["icmp"] = {"type": sport, "code": dport}
        if tunnels[n] is not None:
            netae["tunnel"] = tunnels[n]
        explanation = table.explanations[i] if table.explanations else ""
        if explanation:
            netae["explanation"] = printable(explanation)
        if inc_ids[n]:
            netae["incident"] = {"id": inc_ids[n], "rank": inc_ranks[n]}
        head = _ecs_head(
            first, last, anomalous=anomalous, score=score, threshold=table.threshold, dataset="netae.flow",
            first_iso=t0, last_iso=t1,
        )  # fmt: skip
        yield {**head, "source": source, "destination": destination, "network": network, "netae": netae}


def write_csv(table: ScoreTable, rows: npt.NDArray[np.int64], fh: IO[str]) -> None:
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for row in csv_rows(table, rows):
        w.writerow(row)


def write_jsonl(table: ScoreTable, rows: npt.NDArray[np.int64], fh: IO[str]) -> None:
    for doc in ecs_documents(table, rows):
        fh.write(json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n")


def _cell(value: object) -> str:
    """A table cell shown as it is: controls escaped, and rich markup (``[fd00::a]:443``) escaped."""
    return escape(printable(value))


def _row_cells(cells: list[str], *, anomalous: bool) -> list[str]:
    """Escape every cell; the second column is netae's own ANOMALY marker."""
    out = [_cell(c) for c in cells]
    out[1] = "[bold red]ANOMALY[/]" if anomalous else ""
    return out


def _num_text(value: float | None) -> str:
    return "nan" if value is None else f"{value:.4g}"


def write_table(table: ScoreTable, rows: npt.NDArray[np.int64], fh: IO[str], *, limit: int | None = None) -> None:
    """A rich table for people, highest scores first (rows should come from by_score selection)."""
    from rich.console import Console
    from rich.table import Table

    from netae.features import feature_label

    shown = rows[:limit] if limit else rows
    t = Table(title=f"{len(rows)} flows (threshold {table.threshold:.4g})", title_justify="left")
    for name, justify in (
        ("score", "right"), ("", "left"), ("source", "left"), ("destination", "left"), ("proto", "left"),
        ("first seen (UTC)", "left"), ("dur s", "right"), ("pkts", "right"), ("bytes", "right"), ("why", "left"),
    ):  # fmt: skip
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    f = table.flows
    for i in shown.tolist():
        r = _Row(table, i)
        src = f"{format_ip(*r.src)}:{r.sport}" if r.proto in (6, 17) else format_ip(*r.src)
        dst = f"{format_ip(*r.dst)}:{r.dport}" if r.proto in (6, 17) else format_ip(*r.dst)
        why = r.explanation() or ", ".join(feature_label(name) for name in r.top_features())
        cells = [
            f"{float(table.score[i]):.4g}",
            "",
            src,
            dst,
            _TRANSPORT.get(r.proto, str(r.proto)),
            _iso(int(f.first_ns[i]))[:19].replace("T", " "),
            f"{(int(f.last_ns[i]) - int(f.first_ns[i])) / 1e9:.2f}",
            str(int(f.fwd_pkts[i] + f.bwd_pkts[i])),
            str(int(f.fwd_bytes[i] + f.bwd_bytes[i])),
            why,
        ]
        t.add_row(*_row_cells(cells, anomalous=bool(table.is_anomaly[i])))
    console = Console(file=fh, width=None if fh.isatty() else 200, no_color=not fh.isatty() or None)
    console.print(t)
    if limit and len(rows) > limit:
        console.print(f"... {len(rows) - limit} more; use --limit 0 or --format csv for all")


WRITERS: dict[str, Callable[..., None]] = {"csv": write_csv, "jsonl": write_jsonl, "table": write_table}


def render(
    table: ScoreTable, rows: npt.NDArray[np.int64], fmt: str, *, fh: IO[str] | None = None, **kwargs: Any
) -> str:
    """The output as text (for files, which are then written atomically), or written to ``fh``.

    The table goes straight to the real stream (``fh=sys.stdout``) so that rich sees the
    terminal: its width, colours and ``NO_COLOR``; text meant for a file or pipe is rendered
    plain, 200 columns wide.
    """
    buf = io.StringIO()
    WRITERS[fmt](table, rows, buf if fh is None else fh, **kwargs)
    return buf.getvalue()


# --- host / pair roll-up ----------------------------------------------------------------------

GROUP_CSV_COLUMNS = (
    "group_by",
    "src_ip",
    "dst_ip",
    "flows",
    "anomalous_flows",
    "first_seen",
    "last_seen",
    "max_score",
    "threshold",
    "is_anomaly",
    "worst_flows",
    "explanation",
)
GROUP_BY = ("host", "pair")
WORST_PER_GROUP = 3


@dataclass(frozen=True, slots=True)
class FlowGroups:
    """Flows rolled up per source host (``by='host'``) or host pair (``'pair'``).

    Per group: a representative flow (for the addresses), counts, first and last seen (ns), the
    highest score and up to ``WORST_PER_GROUP`` flow rows, highest score first (-1 padded).
    ``flow_group`` (n_flows,) maps each flow to its group.
    """

    by: str
    flow_group: npt.NDArray[np.int64]
    rep: npt.NDArray[np.int64]
    n_flows: npt.NDArray[np.int64]
    n_anomalous: npt.NDArray[np.int64]
    first_ns: npt.NDArray[np.int64]
    last_ns: npt.NDArray[np.int64]
    max_score: npt.NDArray[np.float32]
    worst: npt.NDArray[np.int64]

    @property
    def n_groups(self) -> int:
        return len(self.rep)


def group_flows(table: ScoreTable, *, by: str) -> FlowGroups:
    """Roll flows up per source host or per (source, destination) host pair (vectorised)."""
    if by not in GROUP_BY:
        raise ValueError(f"group by must be one of {', '.join(GROUP_BY)}; got {by!r}")
    f = table.flows
    n = table.n_flows
    cols = [f.file_id.astype(np.uint64), f.src_hi, f.src_lo]
    if by == "pair":
        cols += [f.dst_hi, f.dst_lo]
    key = np.stack([c.astype(np.uint64) for c in cols], axis=1) if n else np.zeros((0, len(cols)), np.uint64)
    _, rep, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inv = inv.reshape(-1).astype(np.int64)
    g = len(rep)
    n_flows = np.bincount(inv, minlength=g).astype(np.int64)
    n_anom = np.bincount(inv, weights=table.is_anomaly, minlength=g).astype(np.int64)
    first = np.full(g, np.iinfo(np.int64).max, np.int64)
    last = np.full(g, np.iinfo(np.int64).min, np.int64)
    np.minimum.at(first, inv, f.first_ns)
    np.maximum.at(last, inv, f.last_ns)
    max_score = np.full(g, -np.inf, np.float32)
    np.maximum.at(max_score, inv, table.score)
    order = np.lexsort((np.arange(n), -table.score, inv))
    starts = np.zeros(g + 1, np.int64)
    np.cumsum(n_flows, out=starts[1:])
    rank = np.arange(n) - starts[inv[order]]
    worst = np.full((g, WORST_PER_GROUP), -1, np.int64)
    sel = rank < WORST_PER_GROUP
    worst[inv[order][sel], rank[sel]] = order[sel]
    return FlowGroups(
        by=by, flow_group=inv, rep=rep.astype(np.int64), n_flows=n_flows, n_anomalous=n_anom,
        first_ns=first, last_ns=last, max_score=max_score, worst=worst,
    )  # fmt: skip


def select_groups(groups: FlowGroups, *, include_all: bool, by_score: bool = False) -> npt.NDArray[np.int64]:
    """Groups to emit: those with an anomalous flow unless ``include_all``; by time or by score."""
    rows = np.arange(groups.n_groups) if include_all else np.flatnonzero(groups.n_anomalous > 0)
    if by_score:
        return rows[np.lexsort((groups.first_ns[rows], -groups.max_score[rows]))]
    return rows[np.argsort(groups.first_ns[rows], kind="stable")]


def _group_worst(table: ScoreTable, groups: FlowGroups, k: int) -> list[dict[str, Any]]:
    f = table.flows
    out = []
    for i in groups.worst[k].tolist():
        if i < 0:
            break
        r = _Row(table, i)
        item: dict[str, Any] = {
            "src_ip": format_ip(*r.src),
            "dst_ip": format_ip(*r.dst),
            "transport": _TRANSPORT.get(r.proto, str(r.proto)),
            "start": _iso(int(f.first_ns[i])),
            "score": finite_or_none(float(table.score[i])),
            "is_anomaly": bool(table.is_anomaly[i]),
            "community_id": r.community_id(),
        }
        if r.proto in PORTED:
            item["src_port"], item["dst_port"] = r.sport, r.dport
        if r.explanation():
            item["explanation"] = printable(r.explanation())
        out.append(item)
    return out


def _group_why(table: ScoreTable, groups: FlowGroups, k: int) -> str:
    for i in groups.worst[k].tolist():
        if i >= 0 and table.explanations and table.explanations[i]:
            return str(table.explanations[i])
    return ""


def _endpoint_text(item: dict[str, Any]) -> str:
    port = f":{item['dst_port']}" if "dst_port" in item else ""
    return f"{item['dst_ip']}{port}/{item['transport']}"


def write_groups_csv(table: ScoreTable, groups: FlowGroups, rows: npt.NDArray[np.int64], fh: IO[str]) -> None:
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(GROUP_CSV_COLUMNS)
    f = table.flows
    for k in rows.tolist():
        rep = int(groups.rep[k])
        worst = _group_worst(table, groups, k)
        w.writerow(
            [
                groups.by,
                format_ip(int(f.src_hi[rep]), int(f.src_lo[rep])),
                format_ip(int(f.dst_hi[rep]), int(f.dst_lo[rep])) if groups.by == "pair" else "",
                int(groups.n_flows[k]),
                int(groups.n_anomalous[k]),
                f"{int(groups.first_ns[k]) / 1e9:.6f}",
                f"{int(groups.last_ns[k]) / 1e9:.6f}",
                f"{float(groups.max_score[k]):.6g}",
                f"{table.threshold:.6g}",
                "true" if groups.n_anomalous[k] else "false",
                csv_text(";".join(f"{_endpoint_text(x)}:{_num_text(x['score'])}" for x in worst)),
                csv_text(_group_why(table, groups, k)),
            ]
        )


def group_documents(table: ScoreTable, groups: FlowGroups, rows: npt.NDArray[np.int64]) -> Iterator[dict[str, Any]]:
    """ECS documents, one per group (``event.dataset`` netae.group, details under ``netae.group``)."""
    f = table.flows
    for k in rows.tolist():
        rep = int(groups.rep[k])
        first, last = int(groups.first_ns[k]), int(groups.last_ns[k])
        score = float(groups.max_score[k])
        anomalous = bool(groups.n_anomalous[k])
        doc: dict[str, Any] = {
            **_ecs_head(
                first, last, anomalous=anomalous, score=score, threshold=table.threshold, dataset="netae.group"
            ),
            "source": {"ip": format_ip(int(f.src_hi[rep]), int(f.src_lo[rep]))},
        }
        if groups.by == "pair":
            doc["destination"] = {"ip": format_ip(int(f.dst_hi[rep]), int(f.dst_lo[rep]))}
        netae: dict[str, Any] = {
            "threshold": finite_or_none(table.threshold),
            "is_anomaly": anomalous,
            "model_id": table.model_id,
            "group": {
                "by": groups.by,
                "flows": int(groups.n_flows[k]),
                "anomalous_flows": int(groups.n_anomalous[k]),
                "max_score": finite_or_none(score),
                "worst_flows": _group_worst(table, groups, k),
            },
        }
        why = _group_why(table, groups, k)
        if why:
            netae["explanation"] = why
        doc["netae"] = netae
        yield doc


def write_groups_jsonl(table: ScoreTable, groups: FlowGroups, rows: npt.NDArray[np.int64], fh: IO[str]) -> None:
    for doc in group_documents(table, groups, rows):
        fh.write(json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n")


def write_groups_table(
    table: ScoreTable, groups: FlowGroups, rows: npt.NDArray[np.int64], fh: IO[str], *, limit: int | None = None
) -> None:
    """A rich table of groups for people, highest scores first (rows from by_score selection)."""
    from rich.console import Console
    from rich.table import Table

    shown = rows[:limit] if limit else rows
    t = Table(title=f"{len(rows)} {groups.by}s (threshold {table.threshold:.4g})", title_justify="left")
    columns = ["max score", "", "source"] + (["destination"] if groups.by == "pair" else [])
    columns += ["flows", "anomalous", "first seen (UTC)", "last seen (UTC)", "worst flow", "why"]
    for name in columns:
        t.add_column(name, justify="right" if name in ("max score", "flows", "anomalous") else "left")
    f = table.flows
    for k in shown.tolist():
        rep = int(groups.rep[k])
        worst = _group_worst(table, groups, k)
        cells = [
            f"{float(groups.max_score[k]):.4g}",
            "",
            format_ip(int(f.src_hi[rep]), int(f.src_lo[rep])),
        ]
        if groups.by == "pair":
            cells.append(format_ip(int(f.dst_hi[rep]), int(f.dst_lo[rep])))
        cells += [
            str(int(groups.n_flows[k])),
            str(int(groups.n_anomalous[k])),
            _iso(int(groups.first_ns[k]))[:19].replace("T", " "),
            _iso(int(groups.last_ns[k]))[:19].replace("T", " "),
            _endpoint_text(worst[0]) if worst else "",
            _group_why(table, groups, k),
        ]
        t.add_row(*_row_cells(cells, anomalous=bool(groups.n_anomalous[k])))
    console = Console(file=fh, width=None if fh.isatty() else 200, no_color=not fh.isatty() or None)
    console.print(t)
    if limit and len(rows) > limit:
        console.print(f"... {len(rows) - limit} more; use --limit 0 or --format csv for all")


GROUP_WRITERS: dict[str, Callable[..., None]] = {
    "csv": write_groups_csv,
    "jsonl": write_groups_jsonl,
    "table": write_groups_table,
}


def render_groups(
    table: ScoreTable, by: str, fmt: str, *, include_all: bool, fh: IO[str] | None = None, **kwargs: Any
) -> str:
    """Flow verdicts rolled up per host or pair, as text in ``fmt`` (written to ``fh`` instead, if given)."""
    groups = group_flows(table, by=by)
    rows = select_groups(groups, include_all=include_all, by_score=fmt == "table")
    buf = io.StringIO()
    GROUP_WRITERS[fmt](table, groups, rows, buf if fh is None else fh, **kwargs)
    return buf.getvalue()


# --- incidents (issue 19) -----------------------------------------------------------------------
# Flagged flows gathered into ranked incidents (NOTE [incidents] in incidents.py). Every flow row
# carries its incident's id (CSV ``incident``, ECS ``netae.incident.id``), so the two join.

INCIDENT_CSV_COLUMNS = (
    "incident",
    "rank",
    "kind",
    "src_ip",
    "dst_ip",
    "dst_port",
    "protocol",
    "first_seen",
    "last_seen",
    "duration_s",
    "flows",
    "sources",
    "destinations",
    "dst_ports",
    "max_score",
    "threshold",
    "community_id",
    "summary",
    "explanation",
)


def table_incidents(table: ScoreTable) -> Incidents:
    """The incidents of ``table`` (found when the table was built, else now with the default window)."""
    from netae.incidents import find_incidents

    return table.incidents if table.incidents is not None else find_incidents(table)


def incident_ids(table: ScoreTable, rows: npt.NDArray[np.int64]) -> list[str]:
    """The incident id of each selected flow ('' for flows in no incident)."""
    if not table.is_anomaly.any():
        return [""] * len(rows)
    inc = table_incidents(table)
    ids = np.array(("",) + inc.ids, dtype=object)
    out: list[str] = ids[inc.flow_incident[rows] + 1].tolist()
    return out


def incident_ranks(table: ScoreTable, rows: npt.NDArray[np.int64]) -> list[int]:
    """The incident rank (1 = first) of each selected flow, 0 for flows in no incident."""
    if not table.is_anomaly.any():
        return [0] * len(rows)
    out: list[int] = (table_incidents(table).flow_incident[rows] + 1).tolist()
    return out


def _incident_fields(table: ScoreTable, inc: Incidents, k: int) -> dict[str, Any]:
    """The values of incident ``k`` shared by every incident writer."""
    f = table.flows
    rep = int(inc.rep[k])
    r = _Row(table, rep)
    first, last = int(inc.first_ns[k]), int(inc.last_ns[k])
    return {
        "incident": inc.ids[k],
        "rank": k + 1,
        "kind": inc.kind[k],
        "src_ip": format_ip(*r.src),
        "dst_ip": format_ip(*r.dst),
        "dst_port": r.dport if r.proto in (6, 17, 132) else None,
        "protocol": int(f.proto[rep]),
        "first_ns": first,
        "last_ns": last,
        "flows": int(inc.n_flows[k]),
        "sources": int(inc.n_srcs[k]),
        "destinations": int(inc.n_dsts[k]),
        "dst_ports": int(inc.n_dports[k]),
        "max_score": float(inc.score[k]),
        "community_id": r.community_id(),
        "summary": inc.sentence[k],
        "explanation": r.explanation(),
    }


def write_incidents_csv(table: ScoreTable, inc: Incidents, rows: npt.NDArray[np.int64], fh: IO[str]) -> None:
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(INCIDENT_CSV_COLUMNS)
    for k in rows.tolist():
        x = _incident_fields(table, inc, k)
        x["first_seen"] = f"{x['first_ns'] / 1e9:.6f}"
        x["last_seen"] = f"{x['last_ns'] / 1e9:.6f}"
        x["duration_s"] = f"{(x['last_ns'] - x['first_ns']) / 1e9:.6f}"
        x["max_score"] = f"{x['max_score']:.6g}"
        x["threshold"] = f"{table.threshold:.6g}"
        x["dst_port"] = "" if x["dst_port"] is None else x["dst_port"]
        w.writerow([x[c] for c in INCIDENT_CSV_COLUMNS])


def incident_documents(table: ScoreTable, inc: Incidents, rows: npt.NDArray[np.int64]) -> Iterator[dict[str, Any]]:
    """ECS documents, one per incident (``event.dataset`` netae.incident, details under ``netae.incident``)."""
    for k in rows.tolist():
        x = _incident_fields(table, inc, k)
        doc: dict[str, Any] = {
            **_ecs_head(
                x["first_ns"],
                x["last_ns"],
                anomalous=True,
                score=x["max_score"],
                threshold=table.threshold,
                dataset="netae.incident",
            ),  # fmt: skip
            "message": x["summary"],
            "source": {"ip": x["src_ip"]},
            "destination": {"ip": x["dst_ip"]} | ({"port": x["dst_port"]} if x["dst_port"] is not None else {}),
            "network": {
                "transport": _TRANSPORT.get(x["protocol"], str(x["protocol"])),
                "community_id": x["community_id"],
            },
        }
        netae: dict[str, Any] = {
            "threshold": finite_or_none(table.threshold),
            "is_anomaly": True,
            "model_id": table.model_id,
            "incident": {
                "id": x["incident"], "rank": x["rank"], "kind": x["kind"], "flows": x["flows"],
                "sources": x["sources"], "destinations": x["destinations"], "dst_ports": x["dst_ports"],
                "max_score": finite_or_none(x["max_score"]), "summary": x["summary"],
            },
        }  # fmt: skip
        if x["explanation"]:
            netae["explanation"] = x["explanation"]
        doc["netae"] = netae
        yield doc


def write_incidents_jsonl(table: ScoreTable, inc: Incidents, rows: npt.NDArray[np.int64], fh: IO[str]) -> None:
    for doc in incident_documents(table, inc, rows):
        fh.write(json.dumps(doc, separators=(",", ":")) + "\n")


def write_incidents_table(
    table: ScoreTable, inc: Incidents, rows: npt.NDArray[np.int64], fh: IO[str], *, limit: int | None = None
) -> None:
    """A rich table of incidents for people, in rank order; flows with --group-by flow."""
    from rich.console import Console
    from rich.table import Table

    from netae.incidents import human_seconds

    shown = rows[:limit] if limit else rows
    n_flagged = int(table.is_anomaly.sum())
    title = (
        f"{len(rows)} incident{'s' * (len(rows) != 1)} from {n_flagged} anomalous "
        f"flow{'s' * (n_flagged != 1)} (threshold {table.threshold:.4g}); flows: --group-by flow"
    )
    t = Table(title=title, title_justify="left")
    for name in ("#", "incident", "kind", "score", "flows", "first seen (UTC)", "lasted", "what happened", "why"):
        t.add_column(name, justify="right" if name in ("#", "score", "flows") else "left")
    for k in shown.tolist():
        x = _incident_fields(table, inc, k)
        cells = [
            str(x["rank"]), x["incident"], x["kind"], f"{x['max_score']:.4g}", f"{x['flows']:,}",
            _iso(x["first_ns"])[:19].replace("T", " "), human_seconds((x["last_ns"] - x["first_ns"]) / 1e9),
            x["summary"], x["explanation"],
        ]  # fmt: skip
        cells = [_cell(c) for c in cells]
        cells[2] = f"[bold red]{cells[2]}[/]"  # the kind: netae's own markup, after escaping
        t.add_row(*cells)
    console = Console(file=fh, width=None if fh.isatty() else 200, no_color=not fh.isatty() or None)
    console.print(t)
    if limit and len(rows) > limit:
        console.print(f"... {len(rows) - limit} more; use --limit 0 or --format csv for all")


INCIDENT_WRITERS: dict[str, Callable[..., None]] = {
    "csv": write_incidents_csv,
    "jsonl": write_incidents_jsonl,
    "table": write_incidents_table,
}


def render_incidents(table: ScoreTable, fmt: str, *, fh: IO[str] | None = None, **kwargs: Any) -> str:
    """The incidents of ``table`` in rank order, as text in ``fmt`` (written to ``fh`` instead, if given)."""
    inc = table_incidents(table)
    buf = io.StringIO()
    INCIDENT_WRITERS[fmt](table, inc, np.arange(inc.n_incidents, dtype=np.int64), buf if fh is None else fh, **kwargs)
    return buf.getvalue()
