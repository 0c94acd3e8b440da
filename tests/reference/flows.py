"""Reference oracle for flow assembly: the plain numpy sort-and-group twin of ``netae.flows``.

Not used by netae: the tests compare the compiled assembler with it field by field. It follows
the same rules (module docstring of ``netae.flows``) for a time-ordered table below the flood
cap: canonical key (with ``tunnel_key``), idle and active timeouts, TCP FIN/RST closing with a
linger, fragments joining their datagram's latest earlier first fragment within the idle timeout.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from netae.tables import FlowTable, PacketTable, canonical_order, reorder_flows

PROTO_ICMP, PROTO_TCP, PROTO_ICMPV6 = 1, 6, 58
TCP_FIN, TCP_RST = 0x01, 0x04
_ICMP4 = {0: 8, 14: 13, 16: 15, 18: 17, 9: 10}
_ICMP6 = {129: 128, 134: 133, 136: 135, 131: 130, 140: 139, 145: 144}


def _canon(mapping: dict[int, int]) -> np.ndarray:
    table = np.arange(256, dtype=np.uint16)
    for reply, request in mapping.items():
        table[reply] = request
    return table


def _lexgroups(cols: list[np.ndarray], order: np.ndarray) -> np.ndarray:
    new = np.zeros(len(order), bool)
    new[:1] = True
    for c in cols:
        cs = c[order]
        new[1:] |= cs[1:] != cs[:-1]
    return new


def join_fragments(p: PacketTable, idle_ns: int) -> tuple[np.ndarray, np.ndarray]:
    sport, dport = p.src_port.copy(), p.dst_port.copy()
    idx = np.flatnonzero(p.more_fragments | (p.frag_offset > 0))
    if not len(idx):
        return sport, dport
    cols = [c[idx].astype(np.uint64) for c in (p.src_hi, p.src_lo, p.dst_hi, p.dst_lo, p.proto, p.ip_id, p.file_id,
                                               p.tunnel_key)]  # fmt: skip
    o = np.lexsort((np.arange(len(idx)), *cols[::-1]))
    start = _lexgroups(cols, o)
    first = (p.frag_offset[idx] == 0)[o]
    head = np.maximum.accumulate(np.where(first | start, np.arange(len(o)), 0))
    t = p.ts_ns[idx][o]
    joins = first[head] & ~first & (t - t[head] <= idle_ns)
    sport[idx[o[joins]]] = p.src_port[idx[o[head[joins]]]]
    dport[idx[o[joins]]] = p.dst_port[idx[o[head[joins]]]]
    return sport, dport


def _keys(p: PacketTable, sport: np.ndarray, dport: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    is4, is6 = p.proto == PROTO_ICMP, p.proto == PROTO_ICMPV6
    icmp = is4 | is6
    ks = np.where(is4, _canon(_ICMP4)[p.icmp_type], np.where(is6, _canon(_ICMP6)[p.icmp_type], sport))
    kd = np.where(icmp, p.icmp_code.astype(np.uint16), dport)
    s_hi, s_lo, d_hi, d_lo = p.src_hi, p.src_lo, p.dst_hi, p.dst_lo
    swap = (s_hi > d_hi) | ((s_hi == d_hi) & ((s_lo > d_lo) | ((s_lo == d_lo) & ~icmp & (ks > kd))))
    a_port = np.where(swap & ~icmp, kd, ks).astype(np.uint64)
    b_port = np.where(swap & ~icmp, ks, kd).astype(np.uint64)
    cols = [np.where(swap, d_hi, s_hi), np.where(swap, d_lo, s_lo), np.where(swap, s_hi, d_hi),
            np.where(swap, s_lo, d_lo), (a_port << np.uint64(16)) | b_port, p.proto.astype(np.uint64),
            p.file_id.astype(np.uint64), p.tunnel_key]  # fmt: skip
    return cols, icmp


def assemble_flows(
    p: PacketTable, *, idle_timeout_s: float, active_timeout_s: float, tcp_close_linger_s: float = 0.0
) -> FlowTable:
    """The flows of a table, in ``canonical_order``; ``order`` indexes ``p``."""
    if p.n_packets == 0:
        return FlowTable.empty()
    idle, active, linger = (int(x * 1e9) for x in (idle_timeout_s, active_timeout_s, tcp_close_linger_s))
    perm = np.argsort(p.ts_ns, kind="stable")
    q = p.take(perm)
    sport, dport = join_fragments(q, idle)
    cols, icmp = _keys(q, sport, dport)
    o = np.lexsort((np.arange(q.n_packets), *cols[::-1]))
    key_start = np.flatnonzero(_lexgroups(cols, o))
    bounds = np.r_[key_start, len(o)]
    flow_start = []
    # Direction identity of each packet: its source (and port, when both ends are one host).
    same_host = (q.src_hi == q.dst_hi) & (q.src_lo == q.dst_lo) & ~icmp
    src_id = q.src_hi.astype(object) * 2**64 + q.src_lo.astype(object)
    src_id = np.where(same_host, src_id * 2**16 + sport.astype(object), src_id)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        rows = o[a:b]
        # NOTE: FIN/RST bits start from the flow's first packet, as in the kernel.
        starts = _cut_with_first(q.ts_ns[rows], q.tcp_flags[rows], src_id[rows], q.proto[rows[0]] == PROTO_TCP,
                                 idle, active, linger)  # fmt: skip
        flow_start.extend(a + s for s in starts)
    return _table(q, perm, o, np.array(flow_start, np.int64), sport, dport, src_id, icmp)


def _cut_with_first(t: np.ndarray, flags: np.ndarray, src: np.ndarray, is_tcp: bool, idle: int, active: int,
                    linger: int) -> list[int]:  # fmt: skip
    starts, head, bits, closed = [0], 0, 0, 0
    for i in range(len(t)):
        if i > 0 and (t[i] - t[i - 1] > idle or t[i] - t[head] > active or (bits & 8 and t[i] - closed > linger)):
            starts.append(i)
            head, bits = i, 0
        if linger > 0 and is_tcp:
            fwd = src[i] == src[head]
            bits |= (1 if fwd else 2) if flags[i] & TCP_FIN else 0
            bits |= 4 if flags[i] & TCP_RST else 0
            if not bits & 8 and ((bits & 3) == 3 or bits & 4):
                bits |= 8
                closed = int(t[i])
    return starts


def _table(q: PacketTable, perm: np.ndarray, o: np.ndarray, starts: np.ndarray, sport: np.ndarray,
           dport: np.ndarray, src_id: np.ndarray, icmp: np.ndarray) -> FlowTable:  # fmt: skip
    n = len(o)
    lengths = np.diff(np.r_[starts, n])
    rep = np.repeat(np.arange(len(starts)), lengths)
    first = o[starts]
    last = o[np.r_[starts[1:], n] - 1]
    is_fwd = src_id[o] == src_id[first][rep]
    ip_len = q.ip_len[o].astype(np.int64)
    fwd_pkts = np.bincount(rep, weights=is_fwd, minlength=len(starts)).astype(np.int64)
    fwd_bytes = np.bincount(rep, weights=np.where(is_fwd, ip_len, 0), minlength=len(starts)).astype(np.int64)
    tot = np.bincount(rep, weights=ip_len, minlength=len(starts)).astype(np.int64)
    flows = FlowTable(
        src_hi=q.src_hi[first], src_lo=q.src_lo[first], dst_hi=q.dst_hi[first], dst_lo=q.dst_lo[first],
        src_port=np.where(icmp[first], q.icmp_type[first], sport[first]).astype(np.uint16),
        dst_port=np.where(icmp[first], q.icmp_code[first], dport[first]).astype(np.uint16),
        proto=q.proto[first], ip_version=q.ip_version[first], first_ns=q.ts_ns[first], last_ns=q.ts_ns[last],
        fwd_pkts=fwd_pkts, bwd_pkts=lengths - fwd_pkts, fwd_bytes=fwd_bytes, bwd_bytes=tot - fwd_bytes,
        file_id=q.file_id[first], tunnel_key=q.tunnel_key[first], order=perm[o],
        offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64), is_fwd=is_fwd.astype(bool),
    )  # fmt: skip
    return reorder_flows(flows, canonical_order(flows))[0]


def effective_times(ts: npt.NDArray[np.int64], bound_ns: int) -> npt.NDArray[np.int64]:
    """NOTE [capture clock] as a plain loop: clamp late stamps, start an epoch past ``bound_ns``."""
    out = np.empty_like(ts)
    clock, offset = int(ts[0]) if len(ts) else 0, 0
    for i, t in enumerate(ts.tolist()):
        e = t + offset
        if e < clock:
            if clock - e > bound_ns:
                offset += clock - e
            e = clock
        clock = e
        out[i] = e
    return out
