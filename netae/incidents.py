"""Incidents: flagged flows gathered per actor and behaviour, so that one scan is one line.

NOTE [incidents]: the grouping rule, applied to the flagged flows only (``ScoreTable.is_anomaly``).

1. Each flagged flow gets a behaviour class from its own columns:

   - ``probe``: a TCP flow of at most ``PROBE_MAX_PKTS`` packets averaging at most
     ``PROBE_MAX_BYTES_PER_PKT`` bytes (headers only: a SYN and its answer), or a UDP flow other
     than DNS of at most 2 packets averaging at most ``UDP_PROBE_MAX_BYTES_PER_PKT`` bytes, or
     a flood aggregate row (NOTE [flood cap] in ``flows.py``), which counts as the flows it holds;
   - ``dns``: a UDP flow to or from port 53;
   - ``icmp``: ICMP or ICMPv6;
   - ``large``: a flow moving at least ``LARGE_BYTES`` one way (kept apart from the other
     sessions of its host pair, so that one exfiltration is its own incident);
   - ``session``: everything else.

2. Probes to one destination service (host and port) that got at least ``FLOOD_MIN_FLOWS``
   flagged probes in one stretch of time (split as in step 3) are a ``flood`` (grouped by the
   target, whatever their sources); the other probes are a ``scan`` (grouped by their source
   host, whatever their targets). DNS flows are grouped by host pair (client, server); large
   flows and sessions (apart) by host pair, destination port and protocol; ICMP by source host
   (a ping sweep is one incident). Flows of different capture files never share an incident.

3. Within one group, flows are taken by start time; a flow that starts more than the context
   window (``window_s``) after every earlier flow of the group has ended opens a new incident.

Each incident is then named by what its flows did together (``kind``): port scan or host sweep,
SYN flood, DNS series, large upload or download, upload series, slow connections (long, nearly
idle), brute force (repeated sessions to a login service), beacon series (regular starts),
repeated connections, or a single unusual connection.

NOTE [incident ranking]: incidents are ranked by their worst flow's score divided by the
threshold, so that the strongest evidence comes first, but every further incident of the same
kind from the same source host counts ``REPEAT_DECAY`` times less than the one before it: a
host that did one thing twenty times shows one line near the top, and other kinds of trouble
follow it instead of its repeats. Ties go to the earlier incident. numpy throughout; the only
loops run once per incident, to name it and write its sentence.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from netae.tables import ScoreTable, format_ip

__all__ = [
    "FLOOD_MIN_FLOWS",
    "LOGIN_PORTS",
    "REPEAT_DECAY",
    "Incidents",
    "find_incidents",
    "flow_classes",
    "human_bytes",
    "human_seconds",
    "plural",
]

PROBE_MAX_PKTS = 4
PROBE_MAX_BYTES_PER_PKT = 64
UDP_PROBE_MAX_BYTES_PER_PKT = 128  # a UDP datagram to a port and at most one answer
FLOOD_MIN_FLOWS = 20
REPEAT_DECAY = 0.5
LARGE_BYTES = 1_000_000  # one flow moving this much one way is a large transfer
BEACON_MAX_CV = 0.35  # start gaps this regular (std / mean) make a beacon series
BEACON_MIN_FLOWS = 4
SLOW_MIN_DURATION_S = 20.0
SLOW_MAX_BYTES = 10_000
# Services whose repeated short sessions are password guessing (ssh, telnet, ftp, mail, databases,
# remote desktops, directory and file sharing).
LOGIN_PORTS = frozenset({21, 22, 23, 110, 143, 389, 445, 993, 995, 1433, 3306, 3389, 5432, 5900})

CLASS_PROBE, CLASS_DNS, CLASS_ICMP, CLASS_SESSION, CLASS_FLOOD, CLASS_SCAN, CLASS_LARGE = 0, 1, 2, 3, 4, 5, 6


@dataclass(frozen=True, slots=True)
class Incidents:
    """Incidents in rank order (row 0 is rank 1); ``flow_incident`` maps flows to rows (-1: none).

    Per incident: a stable ``ids`` (a hash of its kind, hosts and first flow's start, so the
    same traffic gives the same ids, whatever the file is called or scored with), ``kind``,
    ``rep`` (the flow row of its worst flow, whose addresses stand for the incident), counts of
    flows, sources, destinations and destination ports, first and last seen (ns), ``score`` (its
    worst flow's), the ranking key ``priority`` and one ``sentence``.
    """

    flow_incident: npt.NDArray[np.int64]
    ids: tuple[str, ...]
    kind: tuple[str, ...]
    rep: npt.NDArray[np.int64]
    n_flows: npt.NDArray[np.int64]
    n_srcs: npt.NDArray[np.int64]
    n_dsts: npt.NDArray[np.int64]
    n_dports: npt.NDArray[np.int64]
    first_ns: npt.NDArray[np.int64]
    last_ns: npt.NDArray[np.int64]
    score: npt.NDArray[np.float32]
    priority: npt.NDArray[np.float64]
    sentence: tuple[str, ...]

    @property
    def n_incidents(self) -> int:
        return len(self.rep)

    def flow_ids(self) -> list[str]:
        """The incident id of every flow ('' for flows in none), for output columns."""
        ids = np.array(("",) + self.ids, dtype=object)
        out: list[str] = ids[self.flow_incident + 1].tolist()
        return out

    def members(self, k: int) -> npt.NDArray[np.int64]:
        """Flow rows of incident ``k``, by start time."""
        return np.flatnonzero(self.flow_incident == k)


def flow_classes(table: ScoreTable, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Behaviour class of each given flow (step 1 of NOTE [incidents]); floods and scans split later."""
    f = table.flows
    proto = f.proto[rows]
    pkts = f.fwd_pkts[rows] + f.bwd_pkts[rows]
    nbytes = f.fwd_bytes[rows] + f.bwd_bytes[rows]
    is_dns = (proto == 17) & ((f.dst_port[rows] == 53) | (f.src_port[rows] == 53))
    is_tcp_probe = (proto == 6) & (pkts <= PROBE_MAX_PKTS) & (nbytes <= PROBE_MAX_BYTES_PER_PKT * pkts)
    is_udp_probe = (proto == 17) & ~is_dns & (pkts <= 2) & (nbytes <= UDP_PROBE_MAX_BYTES_PER_PKT * pkts)
    is_probe = is_tcp_probe | is_udp_probe | (f.agg_flows[rows] > 0)  # flood aggregates (NOTE [flood cap])
    is_icmp = (proto == 1) | (proto == 58)
    is_large = np.maximum(f.fwd_bytes[rows], f.bwd_bytes[rows]) >= LARGE_BYTES
    conditions = [is_probe, is_dns, is_icmp, is_large]
    return np.select(conditions, [CLASS_PROBE, CLASS_DNS, CLASS_ICMP, CLASS_LARGE], CLASS_SESSION).astype(np.int64)


def _weights(table: ScoreTable, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """How many flows each row stands for: a flood aggregate counts its flows (NOTE [flood cap])."""
    agg = table.flows.agg_flows[rows]
    out: npt.NDArray[np.int64] = np.where(agg > 0, agg, 1)
    return out


def _split_probes(table: ScoreTable, rows: npt.NDArray[np.int64], cls: npt.NDArray[np.int64], window_ns: int) -> None:
    """Probes to a target hit at least FLOOD_MIN_FLOWS times in one stretch are floods, the others scans (in place)."""
    f = table.flows
    probe = np.flatnonzero(cls == CLASS_PROBE)
    if not len(probe):
        return
    r = rows[probe]
    cols: list[npt.NDArray[Any]] = [f.file_id[r], f.dst_hi[r], f.dst_lo[r], f.dst_port[r], f.proto[r]]
    target = np.stack([c.astype(np.uint64) for c in cols], 1)
    _, inv = np.unique(target, axis=0, return_inverse=True)
    # Counted per stretch of time (as incidents are split): a scan repeated every hour is no flood.
    burst = _split_in_time(inv.reshape(-1).astype(np.int64), f.first_ns[r], f.last_ns[r], window_ns)
    counts = np.bincount(burst, weights=_weights(table, r))
    cls[probe] = np.where(counts[burst] >= FLOOD_MIN_FLOWS, CLASS_FLOOD, CLASS_SCAN)


def _group_keys(table: ScoreTable, rows: npt.NDArray[np.int64], cls: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Group number of each flow (step 2 of NOTE [incidents])."""
    f = table.flows
    zero = np.zeros(len(rows), np.uint64)
    keep_src = cls != CLASS_FLOOD
    keep_dst = (cls != CLASS_SCAN) & (cls != CLASS_ICMP)
    is_session = (cls == CLASS_SESSION) | (cls == CLASS_LARGE)
    keep_port = (cls == CLASS_FLOOD) | is_session
    cols = [
        f.file_id[rows].astype(np.uint64),
        cls.astype(np.uint64),
        np.where(keep_src, f.src_hi[rows], zero),
        np.where(keep_src, f.src_lo[rows], zero),
        np.where(keep_dst, f.dst_hi[rows], zero),
        np.where(keep_dst, f.dst_lo[rows], zero),
        np.where(keep_port, f.dst_port[rows].astype(np.uint64), zero),
        np.where(is_session | (cls == CLASS_FLOOD), f.proto[rows].astype(np.uint64), zero),
    ]
    _, inv = np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)
    return inv.reshape(-1).astype(np.int64)


def _split_in_time(
    group: npt.NDArray[np.int64], first: npt.NDArray[np.int64], last: npt.NDArray[np.int64], window_ns: int
) -> npt.NDArray[np.int64]:
    """Incident number of each flow (step 3): a new one where a flow starts a window after the group's ends."""
    n = len(group)
    order = np.lexsort((first, group))
    g, s, e = group[order], first[order], last[order]
    # Running maximum of the end times within each group, without a loop: rank the ends, lift
    # every group above the previous one, accumulate, and map the ranks back to times.
    end_order = np.argsort(e, kind="stable")
    rank = np.empty(n, np.int64)
    rank[end_order] = np.arange(n)
    run_max = np.maximum.accumulate(rank + g * n) - g * n
    ends_so_far = e[end_order][run_max]
    is_new = np.ones(n, bool)
    if n > 1:
        is_new[1:] = (g[1:] != g[:-1]) | (s[1:] - ends_so_far[:-1] > window_ns)
    out = np.empty(n, np.int64)
    out[order] = np.cumsum(is_new) - 1
    return out


@dataclass(frozen=True, slots=True)
class _Stats:
    """Per-incident facts the kind and the sentence are written from."""

    rows: npt.NDArray[np.int64]
    cls: int
    n_conn: int  # flows the rows stand for (flood aggregates count theirs)
    n_dsts: int
    n_dports: int
    n_srcs: int
    fwd_bytes: int
    bwd_bytes: int
    max_fwd: int
    max_bwd: int
    max_pkts: int
    median_dur_s: float
    median_bytes: float
    gap_cv: float
    mean_gap_s: float


def _stats(table: ScoreTable, rows: npt.NDArray[np.int64], cls: int) -> _Stats:
    f = table.flows
    rows = rows[np.argsort(f.first_ns[rows], kind="stable")]
    dur = (f.last_ns[rows] - f.first_ns[rows]) / 1e9
    gaps = np.diff(f.first_ns[rows]) / 1e9
    mean_gap = float(gaps.mean()) if len(gaps) else 0.0
    nbytes = f.fwd_bytes[rows] + f.bwd_bytes[rows]
    dsts = np.unique(np.stack([f.dst_hi[rows], f.dst_lo[rows]], 1), axis=0)
    srcs = np.unique(np.stack([f.src_hi[rows], f.src_lo[rows]], 1), axis=0)
    return _Stats(
        rows=rows,
        cls=cls,
        n_conn=int(_weights(table, rows).sum()),
        n_dsts=len(dsts),
        n_dports=len(np.unique(f.dst_port[rows])),
        n_srcs=len(srcs),
        fwd_bytes=int(f.fwd_bytes[rows].sum()),
        bwd_bytes=int(f.bwd_bytes[rows].sum()),
        max_fwd=int(f.fwd_bytes[rows].max()),
        max_bwd=int(f.bwd_bytes[rows].max()),
        max_pkts=int((f.fwd_pkts[rows] + f.bwd_pkts[rows]).max()),
        median_dur_s=float(np.median(dur)),
        median_bytes=float(np.median(nbytes)),
        gap_cv=float(gaps.std() / mean_gap) if len(gaps) and mean_gap > 0 else math.inf,
        mean_gap_s=mean_gap,
    )


def _kind(st: _Stats, dport: int, proto: int) -> str:
    """What the flows of one incident did together (see NOTE [incidents])."""
    n = len(st.rows)
    if st.cls == CLASS_SCAN:
        return "host sweep" if st.n_dsts > st.n_dports else "port scan"
    if st.cls == CLASS_FLOOD:
        return "SYN flood" if proto == 6 else "UDP flood"
    if st.cls == CLASS_DNS:
        return "DNS series" if n >= 3 or st.max_pkts >= 20 else "unusual DNS"
    if st.cls == CLASS_ICMP:
        return "ICMP"
    if n == 1:
        if st.max_fwd >= LARGE_BYTES and st.max_fwd >= st.max_bwd:
            return "large upload"
        return "large download" if st.max_bwd >= LARGE_BYTES else "unusual connection"
    if st.cls == CLASS_LARGE and st.bwd_bytes > st.fwd_bytes:
        return "download series"
    if st.max_fwd >= LARGE_BYTES or (st.fwd_bytes >= LARGE_BYTES and st.fwd_bytes >= 4 * st.bwd_bytes):
        return "upload series"
    if n >= 5 and st.median_dur_s >= SLOW_MIN_DURATION_S and st.median_bytes <= SLOW_MAX_BYTES:
        return "slow connections"
    if n >= 3 and dport in LOGIN_PORTS:  # guessing is often paced, so before the beacon test
        return "brute force"
    if n >= BEACON_MIN_FLOWS and st.gap_cv <= BEACON_MAX_CV:
        return "beacon series"
    return "repeated connections"


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n`` with thousands separators and ``word``, or ``many`` (default ``word + "s"``) unless n is 1."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as network tools write them)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def human_seconds(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f} ms" if s >= 0.001 else f"{s * 1e6:.0f} µs"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _sentence(table: ScoreTable, st: _Stats, kind: str, rep: int, span_s: float) -> str:
    f = table.flows
    src = format_ip(int(f.src_hi[rep]), int(f.src_lo[rep]))
    dst = format_ip(int(f.dst_hi[rep]), int(f.dst_lo[rep]))
    port = int(f.dst_port[rep])
    n = len(st.rows)
    during = f"in {human_seconds(span_s)}"
    if kind == "port scan":
        return f"{src} probed {plural(st.n_dports, 'port')} on {plural(st.n_dsts, 'host')} {during}"
    if kind == "host sweep":
        return f"{src} probed {plural(st.n_dsts, 'host')} on {plural(st.n_dports, 'port')} {during}"
    if kind in ("SYN flood", "UDP flood"):
        n_srcs = max(st.n_srcs, int(table.flows.agg_srcs[st.rows].max()))
        who = src if n_srcs == 1 else plural(n_srcs, "source")
        if kind == "UDP flood":
            return f"{who} sent {plural(st.n_conn, 'datagram flow')} to {dst}:{port} {during}"
        return f"{who} opened {plural(st.n_conn, 'half-open connection')} to {dst}:{port} {during}"
    if kind in ("DNS series", "unusual DNS"):
        return f"{src} sent {plural(n, 'DNS flow')} to {dst} ({human_bytes(st.fwd_bytes)} of queries) {during}"
    if kind in ("large upload", "upload series"):
        return f"{src} sent {human_bytes(st.fwd_bytes)} to {dst}:{port} in {plural(n, 'flow')} {during}"
    if kind in ("large download", "download series"):
        return f"{src} received {human_bytes(st.bwd_bytes)} from {dst}:{port} {during}"
    if kind == "beacon series":
        return f"{src} connected to {dst}:{port} {plural(n, 'time')}, every {human_seconds(st.mean_gap_s)} or so"
    if kind == "slow connections":
        return (
            f"{src} held {plural(n, 'connection')} to {dst}:{port} open for {human_seconds(st.median_dur_s)} "
            f"each with {human_bytes(st.median_bytes)} moved"
        )
    if kind == "brute force":
        return f"{src} opened {plural(n, 'short session')} to the login service {dst}:{port} {during}"
    if kind == "ICMP":
        peers = dst if st.n_dsts == 1 else plural(st.n_dsts, "host")
        return f"{src} exchanged {plural(n, 'ICMP flow')} with {peers} {during}"
    if n > 1:
        return f"{plural(n, 'connection')} from {src} to {dst}:{port} {during}"
    return f"{src} connected to {dst}:{port} ({human_bytes(st.fwd_bytes + st.bwd_bytes)})"


def _incident_id(table: ScoreTable, kind: str, rep: int, first_ns: int, cls: int) -> str:
    f = table.flows
    # Not the file's name or position: a capture's rows are the same scored alone or with others.
    parts = [kind, str(first_ns)]
    if cls != CLASS_FLOOD:
        parts.append(format_ip(int(f.src_hi[rep]), int(f.src_lo[rep])))
    if cls != CLASS_SCAN:
        parts += [format_ip(int(f.dst_hi[rep]), int(f.dst_lo[rep])), str(int(f.dst_port[rep]))]
    return "inc-" + hashlib.sha1("|".join(parts).encode()).hexdigest()[:10]


def rank_incidents(
    score_ratio: npt.NDArray[np.float64], family: npt.NDArray[np.int64], first_ns: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Rank order and priority of incidents (NOTE [incident ranking]).

    ``score_ratio``: worst score / threshold; ``family``: a number per (source host, kind); the
    k-th incident of a family (by ratio) has priority ``log(ratio) * REPEAT_DECAY**k``.
    """
    n = len(score_ratio)
    by_ratio = np.lexsort((first_ns, -score_ratio, family))
    fam_sorted = family[by_ratio]
    starts = np.flatnonzero(np.r_[True, fam_sorted[1:] != fam_sorted[:-1]]) if n else np.zeros(0, np.int64)
    k = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    repeat = np.empty(n, np.int64)
    repeat[by_ratio] = k
    priority = np.log(np.maximum(score_ratio, 1.0 + 1e-9)) * REPEAT_DECAY**repeat
    order = np.lexsort((first_ns, -priority))
    return order.astype(np.int64), priority


def _empty(n_flows: int) -> Incidents:
    z = np.zeros(0, np.int64)
    return Incidents(
        flow_incident=np.full(n_flows, -1, np.int64), ids=(), kind=(), rep=z, n_flows=z, n_srcs=z, n_dsts=z,
        n_dports=z, first_ns=z, last_ns=z, score=np.zeros(0, np.float32), priority=np.zeros(0), sentence=(),
    )  # fmt: skip


def find_incidents(table: ScoreTable, *, window_s: float = 300.0) -> Incidents:
    """Gather the flagged flows of ``table`` into ranked incidents (NOTE [incidents])."""
    rows = np.flatnonzero(table.is_anomaly).astype(np.int64)
    if not len(rows):
        return _empty(table.n_flows)
    f = table.flows
    cls = flow_classes(table, rows)
    window_ns = int(window_s * 1e9)
    _split_probes(table, rows, cls, window_ns)
    group = _group_keys(table, rows, cls)
    inc = _split_in_time(group, f.first_ns[rows], f.last_ns[rows], window_ns)
    n_inc = int(inc.max()) + 1
    score = table.score[rows]
    first = np.full(n_inc, np.iinfo(np.int64).max, np.int64)
    last = np.full(n_inc, np.iinfo(np.int64).min, np.int64)
    np.minimum.at(first, inc, f.first_ns[rows])
    np.maximum.at(last, inc, f.last_ns[rows])
    by_score = np.lexsort((f.first_ns[rows], -score, inc))  # per incident, worst flow first
    head = by_score[np.r_[True, inc[by_score][1:] != inc[by_score][:-1]]]
    rep = rows[head]
    inc_cls = cls[head]
    members = np.split(rows[np.argsort(inc, kind="stable")], np.cumsum(np.bincount(inc, minlength=n_inc))[:-1])
    kinds, sentences, ids, stats = [], [], [], []
    for k in range(n_inc):
        st = _stats(table, members[k], int(inc_cls[k]))
        kind = _kind(st, int(f.dst_port[rep[k]]), int(f.proto[rep[k]]))
        kinds.append(kind)
        stats.append(st)
        sentences.append(_sentence(table, st, kind, int(rep[k]), (int(last[k]) - int(first[k])) / 1e9))
        ids.append(_incident_id(table, kind, int(rep[k]), int(first[k]), int(inc_cls[k])))
    actor = np.stack([f.file_id[rep].astype(np.uint64), f.src_hi[rep], f.src_lo[rep]], 1)
    kind_no = np.unique(np.array(kinds), return_inverse=True)[1].reshape(-1).astype(np.uint64)
    family = np.unique(np.column_stack([actor, kind_no]), axis=0, return_inverse=True)[1].reshape(-1)
    ratio = score[head].astype(np.float64) / max(table.threshold, 1e-12)
    order, priority = rank_incidents(ratio, family.astype(np.int64), first)
    new_no = np.empty(n_inc, np.int64)
    new_no[order] = np.arange(n_inc)
    flow_incident = np.full(table.n_flows, -1, np.int64)
    flow_incident[rows] = new_no[inc]
    o = order.tolist()
    return Incidents(
        flow_incident=flow_incident,
        ids=tuple(ids[k] for k in o),
        kind=tuple(kinds[k] for k in o),
        rep=rep[order],
        n_flows=np.bincount(inc, minlength=n_inc)[order].astype(np.int64),
        n_srcs=np.array([stats[k].n_srcs for k in o], np.int64),
        n_dsts=np.array([stats[k].n_dsts for k in o], np.int64),
        n_dports=np.array([stats[k].n_dports for k in o], np.int64),
        first_ns=first[order],
        last_ns=last[order],
        score=score[head][order].astype(np.float32),
        priority=priority[order],
        sentence=tuple(sentences[k] for k in o),
    )
