"""Bidirectional flows by sort and group: PacketTable -> FlowTable.

Direction: a flow's *fwd* direction is that of its first packet (the initiator, reported as
``src``); *bwd* is the other. Both directions share one canonical key: the two (address, port)
endpoints in sorted order, the IP protocol and the file the packets came from (flows never span
capture files). ICMP and ICMPv6 carry (type, code) in the port slots the way Zeek does, with
reply types mapped to their request type so that an echo request and its reply share a flow.

A flow ends where the key changes, where the gap to the previous packet exceeds
``idle_timeout_s``, or where it has lasted ``active_timeout_s``; with ``tcp_close_linger_s`` > 0
a TCP flow also ends that long after FIN from both sides or a RST (NOTE [tcp close]). Non-first IP fragments take the
ports of their first fragment (same addresses, protocol and IP id). ``FlowAssembler`` runs the same
code over chunks and keeps only the packets of still-open flows between them, so chunked and
one-pass assembly give identical flows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from netae.tables import FlowTable, PacketTable

__all__ = [
    "HAVE_KERNEL",
    "FlowAssembler",
    "assemble_flows",
    "flow_key_hash",
    "splitmix64",
    "tcp_close_ns",
    "use_compiled",
]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
TCP_FIN = 0x01
TCP_RST = 0x04
NEVER_NS = np.iinfo(np.int64).max  # "no such time" in int64 time columns

# ICMP reply type -> request type (Zeek's counterpart mapping), so both share one flow key.
_ICMP4_REPLY_TO_REQUEST = {0: 8, 14: 13, 16: 15, 18: 17, 9: 10}
_ICMP6_REPLY_TO_REQUEST = {129: 128, 134: 133, 136: 135, 131: 130, 140: 139, 145: 144}


def _lookup_table(mapping: dict[int, int]) -> npt.NDArray[np.uint16]:
    table = np.arange(256, dtype=np.uint16)
    for reply, request in mapping.items():
        table[reply] = request
    return table


_ICMP4_CANON = _lookup_table(_ICMP4_REPLY_TO_REQUEST)
_ICMP6_CANON = _lookup_table(_ICMP6_REPLY_TO_REQUEST)

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """A fast, well-mixed 64-bit hash of each element (splitmix64's finaliser)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def flow_key_hash(*columns: np.ndarray) -> npt.NDArray[np.uint64]:
    """Combine equal-length integer columns into one 64-bit hash per row."""
    h = np.zeros(len(columns[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in columns:
            h = splitmix64(h ^ col.astype(np.uint64, copy=False))
    return h


def _canonical_ports(
    packets: PacketTable, sport: npt.NDArray[np.uint16], dport: npt.NDArray[np.uint16]
) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint16], npt.NDArray[np.bool_]]:
    """Port slots used in the key, and whether the protocol is ICMP-like (ports not swapped)."""
    is_icmp4 = packets.proto == PROTO_ICMP
    is_icmp6 = packets.proto == PROTO_ICMPV6
    is_icmp = is_icmp4 | is_icmp6
    if is_icmp.any():
        sport = sport.copy()
        t = packets.icmp_type
        sport[is_icmp4] = _ICMP4_CANON[t[is_icmp4]]
        sport[is_icmp6] = _ICMP6_CANON[t[is_icmp6]]
        dport = np.where(is_icmp, packets.icmp_code.astype(np.uint16), dport)
    return sport, dport, is_icmp


def _join_fragments(packets: PacketTable) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint16]]:
    """Ports for every packet, non-first fragments taking those of their first fragment."""
    sport, dport = packets.src_port, packets.dst_port
    is_frag = packets.more_fragments | (packets.frag_offset > 0)
    if not is_frag.any():
        return sport, dport
    idx = np.flatnonzero(is_frag)
    key = flow_key_hash(
        packets.src_hi[idx], packets.src_lo[idx], packets.dst_hi[idx], packets.dst_lo[idx],
        packets.proto[idx], packets.ip_id[idx], packets.file_id[idx],
    )  # fmt: skip
    is_first = packets.frag_offset[idx] == 0
    # Within one datagram key the first fragment sorts first, then the others by time.
    o = np.lexsort((packets.ts_ns[idx], ~is_first, key))
    k_sorted = key[o]
    group_start = np.ones(len(o), dtype=bool)
    group_start[1:] = k_sorted[1:] != k_sorted[:-1]
    head = np.maximum.accumulate(np.where(group_start, np.arange(len(o)), 0))
    first_sorted = is_first[o]
    joins = first_sorted[head] & ~first_sorted
    sport = sport.copy()
    dport = dport.copy()
    take = idx[o[joins]]
    src = idx[o[head[joins]]]
    sport[take] = sport[src]
    dport[take] = dport[src]
    return sport, dport


@dataclass(frozen=True, slots=True)
class _Keyed:
    order: npt.NDArray[np.int64]  # packet rows sorted by (key, time)
    flow_id: npt.NDArray[np.int64]  # per sorted row
    n_flows: int
    sport: npt.NDArray[np.uint16]  # ports after joining fragments, per packet row
    dport: npt.NDArray[np.uint16]


def _group(
    packets: PacketTable, *, idle_timeout_s: float, active_timeout_s: float, tcp_close_linger_s: float = 0.0
) -> _Keyed:
    n = packets.n_packets
    sport, dport = _join_fragments(packets)
    kport_s, kport_d, is_icmp = _canonical_ports(packets, sport, dport)
    # Canonical endpoint order: (addr, port) pairs compared lexicographically; ICMP ports stay.
    s_hi, s_lo, d_hi, d_lo = packets.src_hi, packets.src_lo, packets.dst_hi, packets.dst_lo
    swap = (s_hi > d_hi) | ((s_hi == d_hi) & ((s_lo > d_lo) | ((s_lo == d_lo) & ~is_icmp & (kport_s > kport_d))))
    a_hi = np.where(swap, d_hi, s_hi)
    a_lo = np.where(swap, d_lo, s_lo)
    b_hi = np.where(swap, s_hi, d_hi)
    b_lo = np.where(swap, s_lo, d_lo)
    a_port = np.where(swap & ~is_icmp, kport_d, kport_s)
    b_port = np.where(swap & ~is_icmp, kport_s, kport_d)
    ports = (a_port.astype(np.uint64) << np.uint64(16)) | b_port.astype(np.uint64)
    meta = (packets.proto.astype(np.uint64) << np.uint64(32)) | packets.file_id.astype(np.uint64)
    h = flow_key_hash(a_hi, a_lo, b_hi, b_lo, ports, meta)
    ts = packets.ts_ns
    order = np.lexsort((ts, h)).astype(np.int64)
    hs = h[order]
    new_key = np.empty(n, dtype=bool)
    new_key[:1] = True
    new_key[1:] = hs[1:] != hs[:-1]
    # Guard against hash collisions: equal hashes must mean equal keys, else sort on full keys.
    same = ~new_key[1:]
    if same.any():
        for col in (a_hi, a_lo, b_hi, b_lo, ports, meta):
            c = col[order]
            if np.any(c[1:][same] != c[:-1][same]):
                order = np.lexsort((ts, meta, ports, b_lo, b_hi, a_lo, a_hi)).astype(np.int64)
                new_key[1:] = np.zeros(n - 1, dtype=bool)
                for col2 in (a_hi, a_lo, b_hi, b_lo, ports, meta):
                    c2 = col2[order]
                    new_key[1:] |= c2[1:] != c2[:-1]
                break
    t = ts[order]
    idle_ns = int(idle_timeout_s * 1e9)
    boundary = new_key.copy()
    boundary[1:] |= (t[1:] - t[:-1]) > idle_ns
    starts = np.flatnonzero(boundary)
    ends = np.append(starts[1:], n)
    active_ns = int(active_timeout_s * 1e9)
    too_long = np.flatnonzero(t[ends - 1] - t[starts] > active_ns) if n else np.empty(0, np.int64)
    if tcp_close_linger_s > 0 and n:
        closing = _closing_segments(packets, order, starts)
        _cut_tcp_closes(
            packets, order, sport, boundary, starts, ends, closing, active_ns, int(tcp_close_linger_s * 1e9)
        )
        too_long = np.setdiff1d(too_long, closing)
    for seg in too_long.tolist():  # one iteration per over-long segment, not per packet
        lo, hi = int(starts[seg]), int(ends[seg])
        start_t = t[lo]
        while True:
            cut = lo + int(np.searchsorted(t[lo:hi], start_t + active_ns, side="right"))
            if cut >= hi:
                break
            boundary[cut] = True
            lo = cut
            start_t = t[cut]
    flow_id = np.cumsum(boundary) - 1
    return _Keyed(order=order, flow_id=flow_id.astype(np.int64), n_flows=int(boundary.sum()), sport=sport, dport=dport)


# NOTE [tcp close]: with ``tcp_close_linger_s`` > 0 a TCP flow is closed by the packet that
# completes FIN from both sides (a FIN from the initiator and one from the responder) or by a RST;
# packets up to ``tcp_close_linger_s`` after it (the last ACK, retransmissions) still join it, and
# the next packet of the connection after that starts a new flow. The idle and active timeouts
# apply as before. The setting is saved in the model (a model keeps the flow rules it was trained
# with); the numba kernel and the numpy code below apply the same rule.


def _closing_segments(packets: PacketTable, order: npt.NDArray[np.int64], starts: npt.NDArray[np.int64]) -> np.ndarray:
    """Indices of the (key, idle) segments of TCP packets that hold a FIN or a RST."""
    rows = np.flatnonzero((packets.proto[order] == PROTO_TCP) & ((packets.tcp_flags[order] & (TCP_FIN | TCP_RST)) != 0))
    return np.unique(np.searchsorted(starts, rows, side="right") - 1)


def _cut_tcp_closes(
    packets: PacketTable, order: npt.NDArray[np.int64], sport: npt.NDArray[np.uint16], boundary: npt.NDArray[np.bool_],
    starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64], segments: np.ndarray, active_ns: int, linger_ns: int,
) -> None:  # fmt: skip
    """Mark flow starts inside ``segments`` by the active timeout and NOTE [tcp close] (one walk each)."""
    t = packets.ts_ns[order]
    flags = packets.tcp_flags[order]
    s_hi, s_lo, d_hi, d_lo = (c[order] for c in (packets.src_hi, packets.src_lo, packets.dst_hi, packets.dst_lo))
    sp = sport[order]
    for seg in segments.tolist():  # one iteration per closing segment, then per packet of it
        lo, hi = int(starts[seg]), int(ends[seg])
        head, bits, closed = lo, 0, 0
        for i in range(lo, hi):
            if i > lo and (t[i] - t[head] > active_ns or (bits & 8 and t[i] - closed > linger_ns)):
                boundary[i] = True
                head, bits = i, 0
            fwd = s_hi[i] == s_hi[head] and s_lo[i] == s_lo[head]
            if fwd and s_hi[head] == d_hi[head] and s_lo[head] == d_lo[head]:
                fwd = sp[i] == sp[head]
            if flags[i] & TCP_FIN:
                bits |= 1 if fwd else 2
            if flags[i] & TCP_RST:
                bits |= 4
            if not bits & 8 and ((bits & 3) == 3 or bits & 4):
                bits |= 8
                closed = int(t[i])


def tcp_close_ns(packets: PacketTable, flows: FlowTable) -> npt.NDArray[np.int64]:
    """Per flow, the time of the packet that closed it (NOTE [tcp close]); ``NEVER_NS`` if none.

    ``flows`` indexes ``packets``; only TCP flows can close.
    """
    n = flows.n_flows
    rep = np.repeat(np.arange(n), flows.n_packets)
    t = packets.ts_ns[flows.order]
    flags = packets.tcp_flags[flows.order]
    is_tcp = np.repeat(flows.proto == PROTO_TCP, flows.n_packets)
    fin = is_tcp & ((flags & TCP_FIN) != 0)

    def first(sel: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        out = np.full(n, NEVER_NS, np.int64)
        np.minimum.at(out, rep[sel], t[sel])
        return out

    both_fins = np.maximum(first(fin & flows.is_fwd), first(fin & ~flows.is_fwd))
    closed: npt.NDArray[np.int64] = np.minimum(both_fins, first(is_tcp & ((flags & TCP_RST) != 0)))
    return closed


def assemble_flows(
    packets: PacketTable, *, idle_timeout_s: float, active_timeout_s: float, tcp_close_linger_s: float = 0.0
) -> FlowTable:
    """Group packets into bidirectional flows (module docstring).

    Flows are ordered by first packet time, then key hash; packets within a flow by time, then
    row. With numba, one compiled pass in time order (NOTE [flow kernel]); without it, the
    sort-and-group numpy code, which gives the same table.
    """
    if packets.n_packets == 0:
        return FlowTable.empty()
    timeouts = {"idle_timeout_s": idle_timeout_s, "active_timeout_s": active_timeout_s}
    if _PATH.compiled and HAVE_KERNEL:
        return _assemble_compiled(packets, **timeouts, tcp_close_linger_s=tcp_close_linger_s)
    return _assemble_numpy(packets, **timeouts, tcp_close_linger_s=tcp_close_linger_s)


def _assemble_numpy(
    packets: PacketTable, *, idle_timeout_s: float, active_timeout_s: float, tcp_close_linger_s: float = 0.0
) -> FlowTable:
    keyed = _group(
        packets, idle_timeout_s=idle_timeout_s, active_timeout_s=active_timeout_s, tcp_close_linger_s=tcp_close_linger_s
    )
    order, n_flows = keyed.order, keyed.n_flows
    flow_id = keyed.flow_id
    # Flows in order of their first packet (time, then key order for ties) for stable output.
    starts = np.flatnonzero(np.r_[True, flow_id[1:] != flow_id[:-1]])
    first_ts = packets.ts_ns[order[starts]]
    flow_rank = np.argsort(first_ts, kind="stable")
    lengths = np.diff(np.append(starts, len(order)))
    # Re-lay the packet runs in the new flow order.
    new_lengths = lengths[flow_rank]
    offsets = np.zeros(n_flows + 1, dtype=np.int64)
    np.cumsum(new_lengths, out=offsets[1:])
    run_start = np.repeat(starts[flow_rank], new_lengths)
    within = np.arange(len(order), dtype=np.int64) - np.repeat(offsets[:-1], new_lengths)
    order = order[run_start + within]
    first = order[offsets[:-1]]
    last = order[offsets[1:] - 1]
    # Direction: same (src addr, src port) as the flow's first packet (ICMP: same src addr).
    rep = np.repeat(np.arange(n_flows), new_lengths)
    f_src_hi = packets.src_hi[first]
    f_src_lo = packets.src_lo[first]
    sport, dport = keyed.sport, keyed.dport
    is_icmp = (packets.proto[first] == PROTO_ICMP) | (packets.proto[first] == PROTO_ICMPV6)
    f_sport = sport[first]
    f_dport = dport[first]
    po = order
    is_fwd = (packets.src_hi[po] == f_src_hi[rep]) & (packets.src_lo[po] == f_src_lo[rep])
    same_host = (f_src_hi == packets.dst_hi[first]) & (f_src_lo == packets.dst_lo[first]) & ~is_icmp
    if same_host.any():
        # Both endpoints on one host: tell direction by the source port as well.
        is_fwd &= ~same_host[rep] | (sport[po] == f_sport[rep])
    ip_len = packets.ip_len[po].astype(np.int64)
    fwd_pkts = np.bincount(rep, weights=is_fwd, minlength=n_flows).astype(np.int64)
    fwd_bytes = np.bincount(rep, weights=np.where(is_fwd, ip_len, 0), minlength=n_flows).astype(np.int64)
    tot_bytes = np.bincount(rep, weights=ip_len, minlength=n_flows).astype(np.int64)
    return FlowTable(
        src_hi=f_src_hi,
        src_lo=f_src_lo,
        dst_hi=packets.dst_hi[first],
        dst_lo=packets.dst_lo[first],
        src_port=np.where(is_icmp, packets.icmp_type[first].astype(np.uint16), f_sport).astype(np.uint16),
        dst_port=np.where(is_icmp, packets.icmp_code[first].astype(np.uint16), f_dport).astype(np.uint16),
        proto=packets.proto[first],
        ip_version=packets.ip_version[first],
        first_ns=packets.ts_ns[first],
        last_ns=packets.ts_ns[last],
        fwd_pkts=fwd_pkts,
        bwd_pkts=new_lengths.astype(np.int64) - fwd_pkts,
        fwd_bytes=fwd_bytes,
        bwd_bytes=tot_bytes - fwd_bytes,
        file_id=packets.file_id[first],
        order=order,
        offsets=offsets,
        is_fwd=is_fwd,
    )


class FlowAssembler:
    """Chunked assembly: push packet chunks, get the flows that can no longer grow.

    A flow is closed once the newest packet seen is more than ``idle_timeout_s`` after the
    flow's last packet (no later packet can join it). The packets of open flows are kept and
    re-grouped with the next chunk, so the result equals one-pass assembly; memory holds only
    open flows. Packets must arrive in capture order (chunks in sequence).

    ``early_close`` (live streams) also closes a TCP flow ``tcp_close_linger_s`` after FIN from
    both sides or a RST (NOTE [tcp close]), before flows that ended earlier but wait for their
    idle timeout; without it flows close in the order they ended, which context needs to be
    exact (NOTE in context.py). ``expire(now_ns)`` closes what a clock (the wall clock of a live
    stream) says has expired though no packet came. ``open_packets``/``resume`` carry the open
    flows from one run to the next (``netae score --state``).
    """

    def __init__(
        self, *, idle_timeout_s: float, active_timeout_s: float, tcp_close_linger_s: float = 0.0,
        early_close: bool = False,
    ) -> None:  # fmt: skip
        self.idle_timeout_s = idle_timeout_s
        self.active_timeout_s = active_timeout_s
        self.tcp_close_linger_s = tcp_close_linger_s
        self.early_close = early_close
        self._pending = PacketTable.empty()
        self._max_ts: int | None = None

    def _assemble(self, table: PacketTable) -> FlowTable:
        return assemble_flows(
            table, idle_timeout_s=self.idle_timeout_s, active_timeout_s=self.active_timeout_s,
            tcp_close_linger_s=self.tcp_close_linger_s,
        )  # fmt: skip

    def push(self, packets: PacketTable, *, now_ns: int | None = None) -> tuple[PacketTable, FlowTable]:
        """Add a chunk; return the closed flows and the packet table their ``order`` indexes.

        ``now_ns``: a clock later than the newest packet (``expire``); it is not remembered.
        """
        if packets.n_packets:
            m = int(packets.ts_ns.max())
            self._max_ts = m if self._max_ts is None else max(self._max_ts, m)
        table = PacketTable.concat([self._pending, packets]) if self._pending.n_packets else packets
        flows = self._assemble(table)
        if self._max_ts is None or flows.n_flows == 0:
            return table, flows
        clock = self._max_ts if now_ns is None else max(self._max_ts, now_ns)
        is_open = clock - flows.last_ns <= int(self.idle_timeout_s * 1e9)
        if self.early_close and self.tcp_close_linger_s > 0:
            closed_ns = tcp_close_ns(table, flows)
            is_open &= (closed_ns == NEVER_NS) | (closed_ns >= clock - int(self.tcp_close_linger_s * 1e9))
        if not is_open.any():
            self._pending = PacketTable.empty()
            return table, flows
        lengths = flows.n_packets
        open_rows = np.sort(flows.order[np.repeat(is_open, lengths)])
        self._pending = table.take(open_rows)
        return table, _select_flows(flows, ~is_open)

    def expire(self, now_ns: int) -> tuple[PacketTable, FlowTable]:
        """Close the flows that have expired by ``now_ns`` though no packet came (as ``push``)."""
        return self.push(PacketTable.empty(), now_ns=now_ns)

    def finish(self) -> tuple[PacketTable, FlowTable]:
        """Close every open flow."""
        table = self._pending
        self._pending = PacketTable.empty()
        return table, self._assemble(table)

    def open_packets(self) -> PacketTable:
        """The packets of the still-open flows, in arrival order (what ``resume`` takes back)."""
        return self._pending

    @property
    def max_ts(self) -> int | None:
        """The newest packet time seen (None before any packet)."""
        return self._max_ts

    def resume(self, packets: PacketTable, *, max_ts: int | None) -> None:
        """Start from the open flows of an earlier run: their packets and the newest time it saw."""
        self._pending = packets
        self._max_ts = max_ts

    @property
    def n_pending_packets(self) -> int:
        return self._pending.n_packets

    @property
    def pending_min_ts(self) -> int | None:
        """The earliest packet time of a still-open flow (None when no flow is open)."""
        return int(self._pending.ts_ns.min()) if self._pending.n_packets else self._max_ts


def _select_flows(flows: FlowTable, keep: npt.NDArray[np.bool_]) -> FlowTable:
    """The rows of ``flows`` where ``keep``, with their packet runs (order stays into the same table)."""
    lengths = flows.n_packets
    pkt_keep = np.repeat(keep, lengths)
    new_lengths = lengths[keep]
    offsets = np.zeros(len(new_lengths) + 1, dtype=np.int64)
    np.cumsum(new_lengths, out=offsets[1:])
    cols = {name: arr[keep] for name, arr in flows.column_dict().items()}
    return FlowTable(**cols, order=flows.order[pkt_keep], offsets=offsets, is_fwd=flows.is_fwd[pkt_keep])


# --- compiled path ------------------------------------------------------------------------------
# NOTE [flow kernel]: packets are visited once in time order (rows as given when the table is
# time-ordered, as captures nearly always are; else a stable argsort of the times). An
# open-addressing table maps each canonical key (compared in full, so hash collisions cannot merge
# flows) to its current flow; a packet starts a new flow when its key is new, when the gap to the
# flow's last packet exceeds the idle timeout, or when the flow has lasted the active timeout:
# exactly the boundaries of the sort-and-group code. Direction and counts are updated on the way;
# a second pass lays the packet rows out by flow (a counting sort, so time order is kept).


class _Path:
    compiled = True


_PATH = _Path()


def use_compiled(flag: bool) -> None:
    """Assemble with the numba kernel (default) or the numpy sort-and-group code (tests compare both)."""
    _PATH.compiled = flag


# Per-flow state columns of the kernel.
_S_FIRST, _S_LAST_ROW, _S_START, _S_LAST, _S_N, _S_FWD_N, _S_FWD_B, _S_B, _S_SRC_HI, _S_SRC_LO, _S_PORT = range(11)
_S_FINS, _S_CLOSED = 11, 12  # NOTE [tcp close]: bits 1 fwd FIN, 2 bwd FIN, 4 RST, 8 closed; close time
_S_WIDTH = 16  # two cache lines per flow


def _assemble_compiled(
    packets: PacketTable, *, idle_timeout_s: float, active_timeout_s: float, tcp_close_linger_s: float = 0.0
) -> FlowTable:
    n = packets.n_packets
    ts = packets.ts_ns
    perm = np.empty(0, np.int64)
    if not bool(np.all(ts[1:] >= ts[:-1])):
        perm = np.argsort(ts, kind="stable")
    sport, dport = _join_fragments(packets)
    flow_of = np.empty(n, np.int64)
    is_fwd_row = np.empty(n, np.bool_)
    state, fh, n_flows = _flows_kernel(
        perm, packets.src_hi, packets.src_lo, packets.dst_hi, packets.dst_lo, sport, dport, packets.proto,
        packets.icmp_type, packets.icmp_code, packets.file_id, ts, packets.ip_len, _ICMP4_CANON, _ICMP6_CANON,
        int(idle_timeout_s * 1e9), int(active_timeout_s * 1e9), flow_of, is_fwd_row,
        packets.tcp_flags, int(tcp_close_linger_s * 1e9),
    )  # fmt: skip
    n_flows = int(n_flows)
    state = state[:n_flows]
    first = state[:, _S_FIRST]
    start = state[:, _S_START]
    sorted_flows = np.lexsort((fh[:n_flows], start))
    state = state[sorted_flows]
    first = state[:, _S_FIRST]
    lengths = state[:, _S_N]
    offsets = np.zeros(n_flows + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    rank = np.empty(n_flows, np.int64)
    rank[sorted_flows] = np.arange(n_flows)
    order = np.empty(n, np.int64)
    is_fwd = np.empty(n, np.bool_)
    _layout_kernel(perm, flow_of, is_fwd_row, rank, offsets, order, is_fwd)
    proto = packets.proto[first]
    is_icmp = (proto == PROTO_ICMP) | (proto == PROTO_ICMPV6)
    fwd_pkts = state[:, _S_FWD_N].copy()
    fwd_bytes = state[:, _S_FWD_B].copy()
    return FlowTable(
        src_hi=packets.src_hi[first],
        src_lo=packets.src_lo[first],
        dst_hi=packets.dst_hi[first],
        dst_lo=packets.dst_lo[first],
        src_port=np.where(is_icmp, packets.icmp_type[first].astype(np.uint16), sport[first]).astype(np.uint16),
        dst_port=np.where(is_icmp, packets.icmp_code[first].astype(np.uint16), dport[first]).astype(np.uint16),
        proto=proto,
        ip_version=packets.ip_version[first],
        first_ns=state[:, _S_START].copy(),
        last_ns=state[:, _S_LAST].copy(),
        fwd_pkts=fwd_pkts,
        bwd_pkts=lengths - fwd_pkts,
        fwd_bytes=fwd_bytes,
        bwd_bytes=state[:, _S_B] - fwd_bytes,
        file_id=packets.file_id[first],
        order=order,
        offsets=offsets,
        is_fwd=is_fwd,
    )


HAVE_KERNEL = False
_flows_kernel: Any = None
_layout_kernel: Any = None

try:  # numba is a dependency; without it the numpy sort-and-group code gives the same flows
    from numba import njit
except ImportError:  # pragma: no cover - exercised only without numba
    pass
else:

    @njit(cache=True, nogil=True)
    def _mix(z: Any) -> Any:  # pragma: no cover - compiled; splitmix64 on one value
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))

    @njit(cache=True, nogil=True)
    def _flows_kernel_nb(  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
        perm, src_hi, src_lo, dst_hi, dst_lo, sport, dport, proto, icmp_type, icmp_code, file_id, ts, ip_len,
        canon4, canon6, idle_ns, active_ns, flow_of, is_fwd, tcp_flags, linger_ns,
    ):  # fmt: skip
        n = len(ts)
        use_perm = len(perm) > 0
        cap = 1 << 12
        table = np.zeros(cap, np.int32)  # latest flow of the key in this slot, + 1 (0: empty)
        n_keys = 0
        fcap = 1 << 10
        state = np.empty((fcap, _S_WIDTH), np.int64)
        keys = np.empty((fcap, 8), np.uint64)  # h, a_hi, a_lo, b_hi, b_lo, ports, meta (full key)
        nf = 0
        zero = np.uint64(0)
        for j in range(n):
            r = perm[j] if use_perm else j
            s_hi = src_hi[r]
            s_lo = src_lo[r]
            d_hi = dst_hi[r]
            d_lo = dst_lo[r]
            p = np.int64(proto[r])
            icmp = p == PROTO_ICMP or p == PROTO_ICMPV6  # noqa: SIM109 - numba
            if p == PROTO_ICMP:
                ks = np.int64(canon4[icmp_type[r]])
                kd = np.int64(icmp_code[r])
            elif p == PROTO_ICMPV6:
                ks = np.int64(canon6[icmp_type[r]])
                kd = np.int64(icmp_code[r])
            else:
                ks = np.int64(sport[r])
                kd = np.int64(dport[r])
            swap = s_hi > d_hi or (s_hi == d_hi and (s_lo > d_lo or (s_lo == d_lo and not icmp and ks > kd)))
            if swap:
                a_hi, a_lo, b_hi, b_lo = d_hi, d_lo, s_hi, s_lo
            else:
                a_hi, a_lo, b_hi, b_lo = s_hi, s_lo, d_hi, d_lo
            if swap and not icmp:
                ports = (np.uint64(kd) << np.uint64(16)) | np.uint64(ks)
            else:
                ports = (np.uint64(ks) << np.uint64(16)) | np.uint64(kd)
            meta = (np.uint64(p) << np.uint64(32)) | np.uint64(file_id[r])
            h = _mix(zero ^ a_hi)
            h = _mix(h ^ a_lo)
            h = _mix(h ^ b_hi)
            h = _mix(h ^ b_lo)
            h = _mix(h ^ ports)
            h = _mix(h ^ meta)
            i = np.int64(h & np.uint64(cap - 1))
            t = ts[r]
            fid = -1
            while True:
                f1 = table[i]
                if f1 == 0:
                    break
                k = keys[f1 - 1]
                if (
                    k[0] == h and k[1] == a_hi and k[2] == a_lo and k[3] == b_hi
                    and k[4] == b_lo and k[5] == ports and k[6] == meta
                ):  # fmt: skip
                    fid = np.int64(f1) - 1  # type: ignore[assignment]
                    break
                i = (i + 1) & (cap - 1)
            new_key = fid < 0
            if fid >= 0 and (t - state[fid, _S_LAST] > idle_ns or t - state[fid, _S_START] > active_ns):
                fid = -1
            if fid >= 0 and linger_ns > 0 and (state[fid, _S_FINS] & 8) != 0 and t - state[fid, _S_CLOSED] > linger_ns:
                fid = -1
            if fid < 0:
                if nf == fcap:
                    fcap *= 2
                    grown = np.empty((fcap, _S_WIDTH), np.int64)
                    grown[:nf] = state[:nf]
                    state = grown
                    grown_keys = np.empty((fcap, 8), np.uint64)
                    grown_keys[:nf] = keys[:nf]
                    keys = grown_keys
                fid = nf
                nf += 1
                state[fid, _S_FIRST] = r
                state[fid, _S_START] = t
                state[fid, _S_N] = 0
                state[fid, _S_FWD_N] = 0
                state[fid, _S_FWD_B] = 0
                state[fid, _S_B] = 0
                state[fid, _S_FINS] = 0
                state[fid, _S_CLOSED] = 0
                state[fid, _S_SRC_HI] = np.int64(s_hi)
                state[fid, _S_SRC_LO] = np.int64(s_lo)
                # the source port decides direction only when both ends are one host (-1: never)
                same_host = not icmp and s_hi == d_hi and s_lo == d_lo
                state[fid, _S_PORT] = np.int64(sport[r]) if same_host else -1
                keys[fid, 0] = h
                keys[fid, 1] = a_hi
                keys[fid, 2] = a_lo
                keys[fid, 3] = b_hi
                keys[fid, 4] = b_lo
                keys[fid, 5] = ports
                keys[fid, 6] = meta
                table[i] = fid + 1
                if new_key:
                    n_keys += 1
                    if n_keys * 2 > cap:  # grow: re-insert every key's latest flow by its hash
                        old = table
                        cap *= 2
                        table = np.zeros(cap, np.int32)
                        for q0 in range(len(old)):
                            if old[q0] != 0:
                                q = np.int64(keys[old[q0] - 1, 0] & np.uint64(cap - 1))
                                while table[q] != 0:
                                    q = (q + 1) & (cap - 1)
                                table[q] = old[q0]
            # Direction: same source as the flow's first packet (and same port on one host).
            fwd = np.int64(s_hi) == state[fid, _S_SRC_HI] and np.int64(s_lo) == state[fid, _S_SRC_LO]
            if fwd and state[fid, _S_PORT] >= 0:
                fwd = np.int64(sport[r]) == state[fid, _S_PORT]
            length = np.int64(ip_len[r])
            state[fid, _S_LAST] = t
            state[fid, _S_LAST_ROW] = r
            state[fid, _S_N] += 1
            state[fid, _S_B] += length
            if fwd:
                state[fid, _S_FWD_N] += 1
                state[fid, _S_FWD_B] += length
            if linger_ns > 0 and p == PROTO_TCP and (tcp_flags[r] & (TCP_FIN | TCP_RST)) != 0:
                bits = state[fid, _S_FINS]
                if tcp_flags[r] & TCP_FIN:
                    bits |= 1 if fwd else 2
                if tcp_flags[r] & TCP_RST:
                    bits |= 4
                state[fid, _S_FINS] = bits
                if (bits & 8) == 0 and ((bits & 3) == 3 or (bits & 4) != 0):
                    bits |= 8
                    state[fid, _S_CLOSED] = t
                state[fid, _S_FINS] = bits
            flow_of[r] = fid
            is_fwd[r] = fwd
        return state, keys[:, 0], nf

    @njit(cache=True, nogil=True)
    def _layout_kernel_nb(perm, flow_of, is_fwd_row, rank, offsets, order, is_fwd):  # type: ignore[no-untyped-def]  # pragma: no cover
        pos = offsets[:-1].copy()
        use_perm = len(perm) > 0
        for j in range(len(flow_of)):
            r = perm[j] if use_perm else j
            k = rank[flow_of[r]]
            q = pos[k]
            order[q] = r
            is_fwd[q] = is_fwd_row[r]
            pos[k] = q + 1

    _flows_kernel = _flows_kernel_nb
    _layout_kernel = _layout_kernel_nb
    HAVE_KERNEL = True
