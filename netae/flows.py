"""Bidirectional flows, assembled incrementally: PacketTable chunks -> FlowTable.

Direction: a flow's *fwd* direction is that of its first packet (the initiator, reported as
``src``); *bwd* is the other. Both directions share one canonical key (``KEY_WORDS``): the two
(address, port) endpoints in sorted order, the IP protocol with the capture file (flows never
span files) and the tunnel the packets came through. ICMP and ICMPv6 carry (type, code) in the
port slots the way Zeek does, with reply types mapped to their request type so that an echo
request and its reply share a flow.

A flow ends where the gap to its previous packet exceeds ``idle_timeout_s``, where it has lasted
``active_timeout_s``, or (``tcp_close_linger_s`` > 0) that long after FIN from both sides or a
RST (NOTE [tcp close]). Non-first IP fragments take the ports of the latest first fragment of
their datagram (same addresses, protocol, IP id) that arrived before them, within the idle
timeout.

NOTE [flow table]: ``FlowAssembler`` keeps its state between chunks (compiled kernels, one pass
over each packet): an open-addressing table maps each key to its open flow, comparing the full
key (``KEY_WORDS`` words; one more word is one more column), and hashes it with SipHash-1-3 under
a random per-process key (``hash_seed``), so no input can aim keys at one bucket. Each open
flow links its packets (rows of an arena of open flows' packets); a closed flow's rows are
gathered from its list, and the arena is compacted when it is half dead. Work is linear in the
packets, whatever the chunk size.

NOTE [capture clock]: packets are taken in arrival order against a clock, the newest time seen
(per assembler, i.e. per capture). A packet stamped before the clock is moved to the clock (by
up to ``idle_timeout_s``); one stamped further back starts a new epoch: every later time stamp is
shifted by the jump, so that time goes on from the clock. Packet and flow times are these
effective times, the same whether a capture is read whole or in chunks, streamed or not.
``assemble_flows`` (a table, not a capture) sorts its rows by time first.

NOTE [flood cap]: at most ``max_open_flows`` flows are open. When a new flow would pass the cap,
flows that are due to close are closed; then the open one-packet or handshake-only flows (no
payload, at most 4 packets, TCP flags SYN/ACK/RST only) of every target service (responder
address, port, protocol) that holds many of them are evicted into one aggregate record per
service; when that frees less than a quarter of the cap (a scan, no dominant target), all such
flows are, one record per protocol. A record is a flow with ``agg_flows`` > 0 (and counts of
flows, packets, bytes and distinct sources); scoring flags each one. Evictable flows of those
targets that end within the idle timeout of an eviction round are aggregated too. Should the
open flows still pass three quarters of the cap, those idle longest are closed early. Evictions
happen at the same packets however the capture is chunked. A warning says when the cap is first
reached.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from netae.jit import njit
from netae.protocols import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN
from netae.tables import (
    TUNNEL_COLUMNS,
    FlowTable,
    PacketTable,
    canonical_order,
    concat_flow_parts,
    format_ip,
    reorder_flows,
)

__all__ = [
    "KEY_WORDS",
    "NEVER_NS",
    "FlowAssembler",
    "assemble_flows",
    "flow_key_hash",
    "group_rows",
    "hash_rows",
    "hash_seed",
    "splitmix64",
    "tcp_close_ns",
    "with_aggregate_notes",
]

log = logging.getLogger(__name__)

PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6
NEVER_NS = np.iinfo(np.int64).max  # "no such time" in int64 time columns

# The canonical flow key: a_hi, a_lo, b_hi, b_lo, ports (a << 16 | b), meta (proto << 32 | file),
# tunnel. Column KEY_WORDS of the key array holds the keyed hash.
KEY_WORDS = 7
DEFAULT_MAX_OPEN_FLOWS = 500_000

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
    """A fast, well-mixed, *unkeyed* 64-bit hash of each element (splitmix64's finaliser).

    Deterministic on purpose (the validation split must not change between runs); never use it
    to bucket keys an attacker chooses: that is ``hash_rows``.
    """
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def flow_key_hash(*columns: np.ndarray) -> npt.NDArray[np.uint64]:
    """Combine equal-length integer columns into one deterministic 64-bit hash per row (unkeyed)."""
    h = np.zeros(len(columns[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in columns:
            h = splitmix64(h ^ col.astype(np.uint64, copy=False))
    return h


# --- keyed hashing (SipHash-1-3) ---------------------------------------------------------------

_SEED = np.frombuffer(os.urandom(16), dtype=np.uint64).copy()


def hash_seed() -> npt.NDArray[np.uint64]:
    """The process's random SipHash key (two words): bucket positions differ in every run."""
    return _SEED


# NOTE [kernel helpers]: the per-packet helpers below take scalars and tuples, never arrays or
# the columns' named tuple: numba counts references to each array handed to a helper, once per
# packet, which cost several times the work itself. Plain (LLVM-inlined) functions; the kernels
# index the arrays themselves.


@njit(cache=True, nogil=True)
def _rotl(x: Any, b: int) -> Any:  # pragma: no cover - compiled
    return (x << np.uint64(b)) | (x >> np.uint64(64 - b))


@njit(cache=True, nogil=True)
def _sip_round(v0: Any, v1: Any, v2: Any, v3: Any) -> Any:  # pragma: no cover - compiled
    v0 += v1
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 += v3
    v3 = _rotl(v3, 16) ^ v2
    v0 += v3
    v3 = _rotl(v3, 21) ^ v0
    v2 += v1
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


@njit(cache=True, nogil=True)
def _siphash13(words: Any, k0: Any, k1: Any) -> Any:  # pragma: no cover - compiled
    """SipHash-1-3 of ``words`` (a tuple of 64-bit words, each 8 bytes) under the key (k0, k1)."""
    v0 = k0 ^ np.uint64(0x736F6D6570736575)
    v1 = k1 ^ np.uint64(0x646F72616E646F6D)
    v2 = k0 ^ np.uint64(0x6C7967656E657261)
    v3 = k1 ^ np.uint64(0x7465646279746573)
    for m in words:
        v3 ^= m
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
        v0 ^= m
    b = np.uint64(len(words) * 8) << np.uint64(56)
    v3 ^= b
    v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    v0 ^= b
    v2 ^= np.uint64(0xFF)
    for _ in range(3):
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


@njit(cache=True, nogil=True)
def _hash_rows_nb(words: Any, k0: Any, k1: Any, out: Any) -> None:  # pragma: no cover - compiled
    for r in range(words.shape[0]):
        out[r] = _siphash13(words[r], k0, k1)


def hash_rows(words: npt.NDArray[np.uint64], seed: npt.NDArray[np.uint64] | None = None) -> npt.NDArray[np.uint64]:
    """Keyed SipHash-1-3 of each row of ``words`` (n, k): unpredictable without the seed."""
    s = _SEED if seed is None else seed
    out = np.empty(words.shape[0], np.uint64)
    _hash_rows_nb(np.ascontiguousarray(words, dtype=np.uint64), s[0], s[1], out)
    return out


@njit(cache=True, nogil=True)
def _group_nb(words: Any, h: Any, table: Any, gid: Any) -> int:  # pragma: no cover - compiled
    mask = len(table) - 1
    n_groups = 0
    for r in range(words.shape[0]):
        i = np.int64(h[r] & np.uint64(mask))
        while True:
            g = table[i]
            if g < 0:
                table[i], gid[r] = r, n_groups
                n_groups += 1
                break
            if h[g] == h[r]:
                same = True
                for w in range(words.shape[1]):
                    same = same and words[g, w] == words[r, w]
                if same:
                    gid[r] = gid[g]
                    break
            i = (i + 1) & mask
    return n_groups


def group_rows(words: npt.NDArray[np.uint64], h: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Dense group numbers (in order of first appearance) of the rows of ``words`` (n, k): equal
    rows, compared in full, share one. ``h`` (``hash_rows``: keyed) only picks the buckets, so
    the work stays linear whatever the rows (an open-addressing table at most half full)."""
    gid = np.empty(len(words), np.int64)
    table = np.full(1 << max(4, (2 * len(words)).bit_length()), -1, np.int64)
    _group_nb(np.ascontiguousarray(words, dtype=np.uint64), h, table, gid)
    return gid


# --- the assembly kernel (NOTE [flow table]) ---------------------------------------------------

# Per-flow state columns (int64).
(S_START, S_LAST, S_N, S_FWD_N, S_FWD_B, S_B, S_SRC_HI, S_SRC_LO, S_PORT, S_HEAD, S_TAIL, S_PAY, S_FLAGS,
 S_FINS, S_CLOSED, S_TPOS, S_KSPORT, S_KDPORT) = range(18)  # fmt: skip
_S_WIDTH = 18
# Scalars carried between calls (int64).
SC_CLOCK, SC_OFFSET, SC_HAVE_CLOCK, SC_LIVE, SC_USED, SC_NFREE, SC_PROBES, SC_LOOKUPS, SC_LINGER_DUE = range(9)
_SC_WIDTH = 9
# Why the kernel stopped early.
_STOP_CAP, _STOP_TABLE, _STOP_SLOTS = 1, 2, 3
_FIN_BITS_CLOSED = 8  # NOTE [tcp close]: bits 1 fwd FIN, 2 bwd FIN, 4 RST, 8 closed
_FORCED = 16  # closed early by the flood cap


@njit(cache=True, nogil=True)
def _clock_nb(ts: Any, sc: Any, bound_ns: int, out: Any) -> None:  # pragma: no cover - compiled
    """Effective times (NOTE [capture clock])."""
    for i in range(len(ts)):
        if sc[SC_HAVE_CLOCK] == 0:
            sc[SC_CLOCK] = ts[i]
            sc[SC_HAVE_CLOCK] = 1
        e = ts[i] + sc[SC_OFFSET]
        if e < sc[SC_CLOCK]:
            if sc[SC_CLOCK] - e > bound_ns:
                sc[SC_OFFSET] += sc[SC_CLOCK] - e
            e = sc[SC_CLOCK]
        sc[SC_CLOCK] = e
        out[i] = e


@njit(cache=True, nogil=True)
def _packet_key(s_hi: Any, s_lo: Any, d_hi: Any, d_lo: Any, p: Any, sport: Any, dport: Any, icmp_type: Any,
                icmp_code: Any, file_id: Any, tunnel: Any, canon4: Any,
                canon6: Any) -> Any:  # fmt: skip  # pragma: no cover - compiled
    """A packet's canonical key (a tuple of ``KEY_WORDS`` words), its key ports (s, d), is-ICMP."""
    icmp = p == PROTO_ICMP or p == PROTO_ICMPV6  # noqa: SIM109 - numba
    if p == PROTO_ICMP:
        ks, kd = np.int64(canon4[icmp_type]), np.int64(icmp_code)
    elif p == PROTO_ICMPV6:
        ks, kd = np.int64(canon6[icmp_type]), np.int64(icmp_code)
    else:
        ks, kd = np.int64(sport), np.int64(dport)
    swap = s_hi > d_hi or (s_hi == d_hi and (s_lo > d_lo or (s_lo == d_lo and not icmp and ks > kd)))
    if swap:
        a_hi, a_lo, b_hi, b_lo = d_hi, d_lo, s_hi, s_lo
    else:
        a_hi, a_lo, b_hi, b_lo = s_hi, s_lo, d_hi, d_lo
    if swap and not icmp:
        ports = (np.uint64(kd) << np.uint64(16)) | np.uint64(ks)
    else:
        ports = (np.uint64(ks) << np.uint64(16)) | np.uint64(kd)
    meta = (np.uint64(p) << np.uint64(32)) | np.uint64(np.uint32(file_id))
    return (a_hi, a_lo, b_hi, b_lo, ports, meta, np.uint64(tunnel)), ks, kd, icmp


@njit(cache=True, nogil=True)
def _find(kw: Any, h: Any, keys: Any, table: Any) -> Any:  # pragma: no cover - compiled
    """(slot of the open flow with key ``kw`` or -1, table position to insert at, probes)."""
    mask = len(table) - 1
    i = np.int64(h & np.uint64(mask))
    insert = np.int64(-1)
    probes = 0
    while True:
        probes += 1
        v = table[i]
        if v == 0:
            return -1, (i if insert < 0 else insert), probes
        if v < 0:
            if insert < 0:
                insert = i
        elif keys[v - 1, KEY_WORDS] == h:
            same = True
            for w in range(KEY_WORDS):
                same = same and keys[v - 1, w] == kw[w]
            if same:
                return v - 1, i, probes
        i = (i + 1) & mask


@njit(cache=True, nogil=True)
def _expired(start: int, last: int, fins: int, closed_at: int, t: int, idle_ns: int, active_ns: int,
             linger_ns: int) -> Any:  # fmt: skip  # pragma: no cover - compiled
    if t - last > idle_ns or t - start > active_ns:
        return True
    closed = linger_ns > 0 and (fins & _FIN_BITS_CLOSED) != 0
    return closed and t - closed_at > linger_ns or (fins & _FORCED) != 0


@njit(cache=True, nogil=True)
def _new_flow(kw: Any, h: Any, pos: int, row: int, t: int, src: Any, same_host: bool, sport: Any, dport: Any,
              keys: Any, st: Any, table: Any, free: Any, sc: Any) -> Any:  # fmt: skip  # pragma: no cover
    """Open a flow for key ``kw`` at table position ``pos``; ``src``: (hi, lo) of its first packet."""
    sc[SC_NFREE] -= 1
    f = free[sc[SC_NFREE]]
    for w in range(KEY_WORDS):
        keys[f, w] = kw[w]
    keys[f, KEY_WORDS] = h
    if table[pos] == 0:
        sc[SC_USED] += 1
    table[pos] = f + 1
    st[f, :] = 0
    st[f, S_TPOS] = pos
    st[f, S_START] = t
    st[f, S_HEAD] = row
    st[f, S_SRC_HI], st[f, S_SRC_LO] = np.int64(src[0]), np.int64(src[1])
    # the source port decides direction only when both ends are one host (-1: never)
    st[f, S_PORT] = sport if same_host else -1
    st[f, S_KSPORT], st[f, S_KDPORT] = sport, dport
    sc[SC_LIVE] += 1
    return f


@njit(cache=True, nogil=True)
def _add_packet(f: int, row: int, t: int, fwd: bool, length: Any, payload: Any, fl: Any, tcp: bool, st: Any,
                sc: Any, linger_ns: int) -> None:  # fmt: skip  # pragma: no cover - compiled
    """Count arena row ``row`` (linked by the caller) in flow ``f`` (``fl``: its TCP flags)."""
    st[f, S_TAIL], st[f, S_LAST] = row, t
    st[f, S_N] += 1
    st[f, S_B] += length
    st[f, S_PAY] += payload
    st[f, S_FLAGS] |= fl
    if fwd:
        st[f, S_FWD_N] += 1
        st[f, S_FWD_B] += length
    if linger_ns > 0 and tcp and (fl & (TCP_FIN | TCP_RST)) != 0:
        bits = st[f, S_FINS]
        if fl & TCP_FIN:
            bits |= 1 if fwd else 2
        if fl & TCP_RST:
            bits |= 4
        if (bits & _FIN_BITS_CLOSED) == 0 and ((bits & 3) == 3 or (bits & 4) != 0):
            bits |= _FIN_BITS_CLOSED
            st[f, S_CLOSED] = t
            sc[SC_LINGER_DUE] = min(sc[SC_LINGER_DUE], t + linger_ns)  # when a sweep must look
        st[f, S_FINS] = bits


@njit(cache=True, nogil=True)
def _stop_reason(sc: Any, table_size: int, max_open: int) -> int:  # pragma: no cover - compiled
    """Why a new flow cannot be opened now (0: it can)."""
    if sc[SC_LIVE] >= max_open:
        return _STOP_CAP
    if sc[SC_USED] * 2 >= table_size:
        return _STOP_TABLE
    return _STOP_SLOTS if sc[SC_NFREE] == 0 else 0


@njit(cache=True, nogil=True)
def _assign_nb(c: Any, j0: int, base: int, keys: Any, st: Any, table: Any, free: Any, sc: Any, seed: Any,
               canon4: Any, canon6: Any, nxt: Any, fwd_out: Any, live: Any, max_open: int, idle_ns: int,
               active_ns: int, linger_ns: int) -> Any:  # fmt: skip  # pragma: no cover - compiled
    """Give packets ``j0..`` of the chunk their flows; stops (position, reason) when a limit is hit.

    A flow that a packet of its key finds expired is unlinked from the key table; it stays in
    its slot, open, until the sweep (``FlowAssembler._sweep``) closes it. NOTE [kernel helpers].
    """
    ts, src_hi, src_lo, dst_hi, dst_lo, sport, proto = c.ts, c.src_hi, c.src_lo, c.dst_hi, c.dst_lo, c.sport, c.proto
    k0, k1, probes, stop, j = seed[0], seed[1], 0, 0, len(ts)
    for r in range(j0, len(ts)):
        p = np.int64(proto[r])
        kw, ks, kd, icmp = _packet_key(src_hi[r], src_lo[r], dst_hi[r], dst_lo[r], p, sport[r], c.dport[r],
                                       c.icmp_type[r], c.icmp_code[r], c.file_id[r], c.tunnel_key[r], canon4,
                                       canon6)  # fmt: skip
        h, t, row = _siphash13(kw, k0, k1), ts[r], base + r
        sc[SC_LOOKUPS] += 1
        f, pos, n_probes = _find(kw, h, keys, table)
        probes += n_probes
        if f >= 0 and _expired(st[f, S_START], st[f, S_LAST], st[f, S_FINS], st[f, S_CLOSED], t, idle_ns,
                               active_ns, linger_ns):  # fmt: skip
            if table[st[f, S_TPOS]] == f + 1:  # take it out of the key table (the sweep closes it)
                table[st[f, S_TPOS]] = -1
            st[f, S_TPOS] = -1
            sc[SC_LOOKUPS] += 1
            f, pos, n_probes = _find(kw, h, keys, table)
            probes += n_probes
        if f < 0:
            stop = _stop_reason(sc, len(table), max_open)
            if stop:
                j = r
                break
            same_host = not icmp and src_hi[r] == dst_hi[r] and src_lo[r] == dst_lo[r]
            f = _new_flow(kw, h, pos, row, t, (src_hi[r], src_lo[r]), same_host, np.int64(sport[r]),
                          np.int64(c.dport[r]), keys, st, table, free, sc)  # fmt: skip
            live[f] = True
        # Direction: same source as the flow's first packet (and same port on one host).
        fwd = np.int64(src_hi[r]) == st[f, S_SRC_HI] and np.int64(src_lo[r]) == st[f, S_SRC_LO]
        if fwd and st[f, S_PORT] >= 0:
            fwd = np.int64(sport[r]) == st[f, S_PORT]
        if st[f, S_N] > 0:
            nxt[st[f, S_TAIL]] = row
        nxt[row], fwd_out[row] = -1, fwd
        _add_packet(f, row, t, fwd, np.int64(c.ip_len[r]), np.int64(c.payload_len[r]), np.int64(c.tcp_flags[r]),
                    p == PROTO_TCP, st, sc, linger_ns)  # fmt: skip
    sc[SC_PROBES] += probes
    return j, stop


@njit(cache=True, nogil=True)
def _rebuild_nb(keys: Any, st: Any, live: Any, table: Any, sc: Any) -> None:  # pragma: no cover - compiled
    """Re-insert every linked flow into an empty ``table`` (drops tombstones)."""
    table[:] = 0
    mask = len(table) - 1
    used = 0
    for f in range(len(live)):
        if not live[f] or st[f, S_TPOS] < 0:
            continue
        q = np.int64(keys[f, KEY_WORDS] & np.uint64(mask))
        while table[q] != 0:
            q = (q + 1) & mask
        table[q] = f + 1
        st[f, S_TPOS] = q
        used += 1
    sc[SC_USED] = used


@njit(cache=True, nogil=True)
def _gather_nb(heads: Any, counts: Any, nxt: Any, out: Any) -> None:  # pragma: no cover - compiled
    """Arena rows of each flow's packets, flow after flow, walking their links."""
    q = 0
    for i in range(len(heads)):
        row = heads[i]
        for _ in range(counts[i]):
            out[q] = row
            q += 1
            row = nxt[row]


class _Cols(NamedTuple):
    """The columns the kernel reads (a named tuple of arrays, which numba takes as one argument)."""

    ts: npt.NDArray[np.int64]
    src_hi: npt.NDArray[np.uint64]
    src_lo: npt.NDArray[np.uint64]
    dst_hi: npt.NDArray[np.uint64]
    dst_lo: npt.NDArray[np.uint64]
    sport: npt.NDArray[np.uint16]
    dport: npt.NDArray[np.uint16]
    proto: npt.NDArray[np.uint8]
    icmp_type: npt.NDArray[np.uint8]
    icmp_code: npt.NDArray[np.uint8]
    file_id: npt.NDArray[np.int32]
    tunnel_key: npt.NDArray[np.uint64]
    ip_len: npt.NDArray[np.uint32]
    payload_len: npt.NDArray[np.uint32]
    tcp_flags: npt.NDArray[np.uint8]


def _kernel_cols(p: PacketTable, ts: npt.NDArray[np.int64], sport: np.ndarray, dport: np.ndarray) -> _Cols:
    return _Cols(ts, p.src_hi, p.src_lo, p.dst_hi, p.dst_lo, sport, dport, p.proto, p.icmp_type, p.icmp_code,
                 p.file_id, p.tunnel_key, p.ip_len, p.payload_len, p.tcp_flags)  # fmt: skip


# --- fragments ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Firsts:
    """First fragments seen lately (datagram key, ports, time), carried to the next chunk."""

    key: npt.NDArray[np.uint64]  # (n, 6): src_hi, src_lo, dst_hi, dst_lo, proto << 32 | ip_id, file+tunnel
    sport: npt.NDArray[np.uint16]
    dport: npt.NDArray[np.uint16]
    ts: npt.NDArray[np.int64]

    @classmethod
    def empty(cls) -> _Firsts:
        return cls(np.empty((0, 6), np.uint64), np.empty(0, np.uint16), np.empty(0, np.uint16), np.empty(0, np.int64))


def _datagram_keys(p: PacketTable, idx: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    out = np.empty((len(idx), 6), np.uint64)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = p.src_hi[idx], p.src_lo[idx], p.dst_hi[idx], p.dst_lo[idx]
    out[:, 4] = (p.proto[idx].astype(np.uint64) << np.uint64(32)) | p.ip_id[idx].astype(np.uint64)
    out[:, 5] = splitmix64(p.tunnel_key[idx]) ^ p.file_id[idx].astype(np.uint64)
    return out


def _join_fragments(
    p: PacketTable, ts: npt.NDArray[np.int64], carry: _Firsts, idle_ns: int, keep: int
) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint16], _Firsts]:
    """Ports per packet, non-first fragments taking those of their datagram's latest earlier
    first fragment (full key compared, by sorting); and the first fragments to carry on."""
    is_frag = p.more_fragments | (p.frag_offset > 0)
    if not is_frag.any() and not len(carry.ts):
        return p.src_port, p.dst_port, carry
    idx = np.flatnonzero(is_frag)
    key = np.concatenate([carry.key, _datagram_keys(p, idx)])
    is_first = np.concatenate([np.ones(len(carry.ts), bool), p.frag_offset[idx] == 0])
    t = np.concatenate([carry.ts, ts[idx]])
    sport = np.concatenate([carry.sport, p.src_port[idx]])
    dport = np.concatenate([carry.dport, p.dst_port[idx]])
    n = len(t)
    o = np.lexsort((np.arange(n), *[key[:, w] for w in range(5, -1, -1)]))
    ks = key[o]
    start = np.ones(n, bool)
    start[1:] = np.any(ks[1:] != ks[:-1], axis=1)
    first_o = is_first[o]
    head = np.maximum.accumulate(np.where(first_o | start, np.arange(n), 0))
    joins = first_o[head] & ~first_o & (t[o] - t[o[head]] <= idle_ns)
    out_s, out_d = p.src_port.copy(), p.dst_port.copy()
    n_carry = len(carry.ts)
    take = o[joins] - n_carry
    out_s[idx[take]] = sport[o[head[joins]]]
    out_d[idx[take]] = dport[o[head[joins]]]
    firsts = np.flatnonzero(is_first & (t >= (int(t.max()) if n else 0) - idle_ns))[-keep:]
    return out_s, out_d, _Firsts(key[firsts], sport[firsts], dport[firsts], t[firsts])


# --- the arena of open flows' packets ----------------------------------------------------------


class _Arena:
    """Packets of open flows, appended chunk by chunk, with each row's link, direction, arrival."""

    def __init__(self) -> None:
        self.n = 0
        self.cols: dict[str, np.ndarray] = {k: v for k, v in PacketTable.empty().column_dict().items()}
        self.nxt = np.empty(0, np.int64)
        self.fwd = np.empty(0, np.bool_)
        self.arrival = np.empty(0, np.int64)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {**self.cols, "\0nxt": self.nxt, "\0fwd": self.fwd, "\0arrival": self.arrival}

    def _set(self, arrays: dict[str, np.ndarray]) -> None:
        self.nxt, self.fwd, self.arrival = arrays.pop("\0nxt"), arrays.pop("\0fwd"), arrays.pop("\0arrival")
        self.cols = arrays

    def append(self, p: PacketTable, ts: npt.NDArray[np.int64], first_arrival: int) -> int:
        """Add the chunk's rows (times replaced by effective ones); returns the first row's index."""
        k, base = p.n_packets, self.n
        if base + k > len(self.nxt):
            cap = max(2 * len(self.nxt), base + k, 1024)
            grown = {}
            for name, arr in self._arrays().items():
                g = np.empty(cap, arr.dtype)
                g[:base] = arr[:base]
                grown[name] = g
            self._set(grown)
        for name, arr in p.column_dict().items():
            self.cols[name][base : base + k] = arr
        self.cols["ts_ns"][base : base + k] = ts
        self.arrival[base : base + k] = np.arange(first_arrival, first_arrival + k)
        self.n = base + k
        return base

    def take(self, rows: npt.NDArray[np.int64]) -> PacketTable:
        if len(rows) > 1 and bool(np.all(np.diff(rows) == 1)):  # a run: copy a slice
            a, b = int(rows[0]), int(rows[-1]) + 1
            return PacketTable(**{name: arr[a:b].copy() for name, arr in self.cols.items()})
        return PacketTable(**{name: np.take(arr, rows) for name, arr in self.cols.items()})

    def compact(self, rows: npt.NDArray[np.int64]) -> None:
        """Keep only ``rows`` (live flows' packets, flow after flow), renumbered from 0."""
        self._set({name: arr[rows] for name, arr in self._arrays().items()})
        self.n = len(rows)


@dataclass(slots=True)
class FloodStats:
    """What the flood cap did (NOTE [flood cap]): eviction rounds, flows evicted, flows closed early."""

    rounds: int = 0
    evicted_flows: int = 0
    forced_flows: int = 0
    aggregates: int = 0
    probes: int = 0
    lookups: int = 0


class FlowAssembler:
    """Incremental assembly: push packet chunks, get the flows that can no longer grow.

    A flow is closed once the capture clock (NOTE [capture clock]) is more than
    ``idle_timeout_s`` after its last packet; flows therefore close in the order they ended,
    which context needs to be exact (NOTE in context.py). ``early_close`` (live streams) also
    closes a TCP flow ``tcp_close_linger_s`` after FIN from both sides or a RST (NOTE [tcp
    close]). ``expire(now_ns)`` closes what a clock (the wall clock of a live stream) says has
    expired though no packet came. ``open_packets``/``resume`` carry the open flows from one run
    to the next. Pushing a capture in any chunks gives the same flows (NOTE [flow table]); at
    most ``max_open_flows`` are open (NOTE [flood cap]), and ``on_warning`` hears when the cap
    is first reached.
    """

    def __init__(
        self, *, idle_timeout_s: float, active_timeout_s: float, tcp_close_linger_s: float = 0.0,
        early_close: bool = False, max_open_flows: int = DEFAULT_MAX_OPEN_FLOWS,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:  # fmt: skip
        self.idle_timeout_s = idle_timeout_s
        self.active_timeout_s = active_timeout_s
        self.tcp_close_linger_s = tcp_close_linger_s
        self.early_close = early_close
        self.max_open_flows = max(int(max_open_flows), 16)
        self.on_warning = on_warning
        self.stats = FloodStats()
        self._idle_ns = int(idle_timeout_s * 1e9)
        self._active_ns = int(active_timeout_s * 1e9)
        self._linger_ns = int(tcp_close_linger_s * 1e9)
        self._keys = np.zeros((0, KEY_WORDS + 1), np.uint64)
        self._st = np.zeros((0, _S_WIDTH), np.int64)
        self._live = np.zeros(0, np.bool_)
        self._free = np.zeros(0, np.int64)
        self._table = np.zeros(1024, np.int64)
        self._sc = np.zeros(_SC_WIDTH, np.int64)
        self._sc[SC_LINGER_DUE] = NEVER_NS
        self._arena = _Arena()
        self._firsts = _Firsts.empty()
        self._out: list[tuple[PacketTable, FlowTable, npt.NDArray[np.int64]]] = []
        self._n_arrived = 0
        self._last_evict_ns: int | None = None
        self._flood_keys = np.zeros((0, 6), np.uint64)  # distinct aggregate keys of the eviction rounds
        self._live_pkts = 0  # packets of open flows
        self._min_start: int | None = None  # cached pending_min_ts
        self._next_due = -NEVER_NS

    # -- public API --

    def push(self, packets: PacketTable, *, now_ns: int | None = None) -> tuple[PacketTable, FlowTable]:
        """Add a chunk; return the closed flows and their packets (``order`` indexes them).

        ``now_ns``: a clock later than the newest packet (``expire``); it is not remembered.
        """
        if packets.n_packets:
            self._ingest(packets)
        clock = self.max_ts
        if clock is not None:
            self._sweep(clock if now_ns is None else max(clock, now_ns))
        self._compact()  # never inside _ingest: the chunk's rows are linked as it goes
        packets_out, flows, _ = self._drain()
        return packets_out, flows

    def expire(self, now_ns: int) -> tuple[PacketTable, FlowTable]:
        """Close the flows that have expired by ``now_ns`` though no packet came (as ``push``)."""
        return self.push(PacketTable.empty(), now_ns=now_ns)

    def finish(self) -> tuple[PacketTable, FlowTable]:
        """Close every open flow."""
        self._release(np.flatnonzero(self._live))
        self._compact()
        packets, flows, _ = self._drain()
        return packets, flows

    def open_packets(self) -> PacketTable:
        """The packets of the still-open flows, in arrival order (what ``resume`` takes back)."""
        rows = self._rows_of(np.flatnonzero(self._live))
        return self._arena.take(np.sort(rows))

    def resume(self, packets: PacketTable, *, max_ts: int | None) -> None:
        """Start from the open flows of an earlier run: their packets and the newest time it saw."""
        if packets.n_packets:
            self._ingest(packets)
        if max_ts is not None:
            self._sc[SC_CLOCK] = max(int(self._sc[SC_CLOCK]), max_ts) if self._sc[SC_HAVE_CLOCK] else max_ts
            self._sc[SC_HAVE_CLOCK] = 1

    @property
    def max_ts(self) -> int | None:
        """The capture clock: the newest (effective) packet time seen; None before any packet."""
        return int(self._sc[SC_CLOCK]) if self._sc[SC_HAVE_CLOCK] else None

    @property
    def n_open_flows(self) -> int:
        return int(self._sc[SC_LIVE])

    @property
    def n_pending_packets(self) -> int:
        return self._live_pkts

    @property
    def pending_min_ts(self) -> int | None:
        """The earliest first-packet time of a still-open flow (the clock when none is open)."""
        if self._sc[SC_LIVE]:
            if self._min_start is None:  # new flows start at the clock: only releases change it
                self._min_start = int(self._st[self._live, S_START].min())
            return self._min_start
        return self.max_ts

    # -- packets in --

    def _ingest(self, p: PacketTable) -> None:
        n = p.n_packets
        ts = np.empty(n, np.int64)
        _clock_nb(p.ts_ns, self._sc, self._idle_ns, ts)
        sport, dport, self._firsts = _join_fragments(p, ts, self._firsts, self._idle_ns, self.max_open_flows)
        base = self._arena.append(p, ts, self._n_arrived)
        self._live_pkts += n
        self._n_arrived += n
        cols = _kernel_cols(p, ts, sport, dport)
        j = 0
        while j < n:
            self._reserve(n - j)
            j, why = _assign_nb(
                cols, j, base, self._keys, self._st, self._table, self._free, self._sc, _SEED, _ICMP4_CANON,
                _ICMP6_CANON, self._arena.nxt, self._arena.fwd, self._live, self.max_open_flows, self._idle_ns,
                self._active_ns, self._linger_ns,
            )  # fmt: skip
            if why == _STOP_CAP:
                self._on_cap(int(ts[j]))
            elif why == _STOP_TABLE:
                self._rebuild_table()
        self.stats.probes, self.stats.lookups = int(self._sc[SC_PROBES]), int(self._sc[SC_LOOKUPS])

    def _reserve(self, k: int) -> None:
        """Enough free slots for ``k`` new flows, up to the cap (slots grow by doubling)."""
        n_slots, n_free = len(self._live), int(self._sc[SC_NFREE])
        k = min(k, max(n_slots, 1024))  # never more than double: the kernel stops for more (_STOP_SLOTS)
        if n_free >= k or n_slots >= self.max_open_flows:
            return
        cap = min(self.max_open_flows, max(2 * n_slots, n_slots + k - n_free, 1024))
        keys = np.zeros((cap, KEY_WORDS + 1), np.uint64)
        st = np.zeros((cap, _S_WIDTH), np.int64)
        live = np.zeros(cap, np.bool_)
        keys[:n_slots], st[:n_slots], live[:n_slots] = self._keys, self._st, self._live
        free = np.empty(cap, np.int64)
        free[:n_free] = self._free[:n_free]
        free[n_free : n_free + cap - n_slots] = np.arange(cap - 1, n_slots - 1, -1)  # low slots popped first
        self._sc[SC_NFREE] = n_free + cap - n_slots
        self._keys, self._st, self._live, self._free = keys, st, live, free

    def _rebuild_table(self) -> None:
        """A fresh key table without tombstones, twice as large while a quarter of it is live."""
        size = len(self._table)
        while int(self._sc[SC_LIVE]) * 4 > size:
            size *= 2
        self._table = np.zeros(size, np.int64)
        _rebuild_nb(self._keys, self._st, self._live, self._table, self._sc)

    # -- flows out --

    def _sweep(self, clock: int) -> None:
        """Close the open flows that ``clock`` says can no longer grow."""
        early = self.early_close and self._linger_ns > 0
        if clock <= self._next_due and not (early and clock > self._sc[SC_LINGER_DUE]):
            return
        live = np.flatnonzero(self._live)
        st = self._st[live]
        closable = (clock - st[:, S_LAST] > self._idle_ns) | ((st[:, S_FINS] & _FORCED) != 0)
        ended = (st[:, S_FINS] & _FIN_BITS_CLOSED) != 0
        if early:
            closable |= ended & (clock - st[:, S_CLOSED] > self._linger_ns)
        self._release(live[closable])
        rest = st[~closable, S_LAST]
        self._next_due = int(rest.min()) + self._idle_ns if len(rest) else NEVER_NS
        lingering = st[~closable & ended, S_CLOSED]
        self._sc[SC_LINGER_DUE] = int(lingering.min()) + self._linger_ns if len(lingering) else NEVER_NS

    def _release(self, slots: npt.NDArray[np.int64]) -> None:
        """Hand ``slots`` out (aggregated when NOTE [flood cap] says so) and free them."""
        if not len(slots):
            return
        if len(self._flood_keys):
            agg, words = self._flooded(slots)
            self._aggregate(agg, words)
            self._free_slots(agg)
            slots = np.setdiff1d(slots, agg)
        if len(slots):
            self._out.append(self._emit(slots))
        self._free_slots(slots)

    def _free_slots(self, slots: npt.NDArray[np.int64]) -> None:
        self._live_pkts -= int(self._st[slots, S_N].sum())
        self._min_start = None
        pos = self._st[slots, S_TPOS]
        pos = pos[pos >= 0]
        self._table[pos] = -1
        self._st[slots, S_TPOS] = -1
        self._live[slots] = False
        n_free = int(self._sc[SC_NFREE])
        self._free[n_free : n_free + len(slots)] = slots
        self._sc[SC_NFREE] = n_free + len(slots)
        self._sc[SC_LIVE] -= len(slots)

    def _rows_of(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        counts = self._st[slots, S_N]
        rows = np.empty(int(counts.sum()), np.int64)
        _gather_nb(self._st[slots, S_HEAD], counts, self._arena.nxt, rows)
        return rows

    def _compact(self) -> None:
        """Renumber the arena when more than half of it belongs to closed flows."""
        if self._arena.n <= 2 * self._live_pkts + 65536:
            return
        live = np.flatnonzero(self._live)
        counts = self._st[live, S_N]
        n_live = int(counts.sum())
        rows = self._rows_of(live)
        self._arena.compact(rows)
        starts = np.zeros(len(live), np.int64)
        np.cumsum(counts[:-1], out=starts[1:])
        nxt = np.arange(1, n_live + 1, dtype=np.int64)
        nxt[starts + counts - 1] = -1
        self._arena.nxt[:n_live] = nxt
        self._st[live, S_HEAD] = starts
        self._st[live, S_TAIL] = starts + counts - 1

    def _sorted(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """``slots`` by first packet time, then full key: a total order that no seed changes."""
        k = self._keys[slots]
        return slots[np.lexsort((*[k[:, w] for w in range(KEY_WORDS - 1, -1, -1)], self._st[slots, S_START]))]

    def _emit(self, slots: npt.NDArray[np.int64]) -> tuple[PacketTable, FlowTable, npt.NDArray[np.int64]]:
        slots = self._sorted(slots)
        st = self._st[slots]
        rows = self._rows_of(slots)
        kept, order = _in_arrival_order(rows)
        head = st[:, S_HEAD]
        a = self._arena.cols
        offsets = np.zeros(len(slots) + 1, np.int64)
        np.cumsum(st[:, S_N], out=offsets[1:])
        proto = a["proto"][head]
        is_icmp = (proto == PROTO_ICMP) | (proto == PROTO_ICMPV6)
        flows = FlowTable(
            src_hi=a["src_hi"][head], src_lo=a["src_lo"][head], dst_hi=a["dst_hi"][head], dst_lo=a["dst_lo"][head],
            src_port=np.where(is_icmp, a["icmp_type"][head], st[:, S_KSPORT]).astype(np.uint16),
            dst_port=np.where(is_icmp, a["icmp_code"][head], st[:, S_KDPORT]).astype(np.uint16),
            proto=proto, ip_version=a["ip_version"][head], first_ns=st[:, S_START].copy(),
            last_ns=st[:, S_LAST].copy(), fwd_pkts=st[:, S_FWD_N].copy(), bwd_pkts=st[:, S_N] - st[:, S_FWD_N],
            fwd_bytes=st[:, S_FWD_B].copy(), bwd_bytes=st[:, S_B] - st[:, S_FWD_B], file_id=a["file_id"][head],
            order=order, offsets=offsets, is_fwd=self._arena.fwd[rows],
            **{name: a[name][head] for name in TUNNEL_COLUMNS},  # the tunnel of the first packet
        )  # fmt: skip
        return self._arena.take(kept), flows, self._arena.arrival[kept]

    def _drain(self) -> tuple[PacketTable, FlowTable, npt.NDArray[np.int64]]:
        out, self._out = self._out, []
        packets, flows = concat_flow_parts([(p, f) for p, f, _ in out])
        arrival = np.concatenate([r for _, _, r in out]) if out else np.empty(0, np.int64)
        return packets, flows, arrival

    # -- the flood cap (NOTE [flood cap]) --

    def _evictable(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        st = self._st[slots]
        is_tcp = (self._keys[slots, 5] >> np.uint64(32)) == PROTO_TCP
        handshake = is_tcp & ((st[:, S_FLAGS] & ~(TCP_SYN | TCP_ACK | TCP_RST)) == 0)
        out: npt.NDArray[np.bool_] = (st[:, S_N] <= 4) & (st[:, S_PAY] == 0) & ((st[:, S_N] == 1) | handshake)
        return out

    def _on_cap(self, clock: int) -> None:
        """The cap is reached: close what is due, evict the floods, close the longest idle early."""
        self._sweep(clock)
        if self._sc[SC_LIVE] < self.max_open_flows:
            return
        if self._last_evict_ns is None:
            self._warn(clock)
        self._last_evict_ns = clock
        self.stats.rounds += 1
        live = np.flatnonzero(self._live)
        ev = live[self._evictable(live)]
        o, starts = _groups(list(self._service_words(ev).T), self._st[ev, S_START])
        sizes = np.diff(np.r_[starts, len(o)])
        chosen = ev[o[np.repeat(sizes >= max(8, len(ev) // 1000), sizes)]]  # the targets of a flood
        coarse = len(chosen) < self.max_open_flows // 4  # no dominant target (a scan): all, per protocol
        self._evict(ev if coarse else chosen, coarse=coarse)
        rest = np.flatnonzero(self._live)
        excess = len(rest) - (3 * self.max_open_flows) // 4
        if excess > 0:
            oldest = rest[np.argsort(self._st[rest, S_LAST], kind="stable")[:excess]]
            self._st[oldest, S_FINS] |= _FORCED
            self.stats.forced_flows += len(oldest)
            self._next_due = -NEVER_NS
            self._sweep(clock)

    def _service_words(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
        """(n, 6) target service of each flow: responder address, port, protocol, file, tunnel."""
        head, a = self._st[slots, S_HEAD], self._arena.cols
        out = np.empty((len(slots), 6), np.uint64)
        out[:, 0], out[:, 1] = a["dst_hi"][head], a["dst_lo"][head]
        out[:, 2] = self._st[slots, S_KDPORT]
        out[:, 3], out[:, 4], out[:, 5] = a["proto"][head], a["file_id"][head], a["tunnel_key"][head]
        return out

    def _evict(self, slots: npt.NDArray[np.int64], *, coarse: bool) -> None:
        words = self._service_words(slots)
        if coarse:
            words[:, :3] = 0
        self.stats.evicted_flows += len(slots)
        new = self._aggregate(slots, words)
        self._flood_keys = np.concatenate([self._flood_keys, new[~self._known_floods(new)]])
        self._free_slots(slots)

    def _flooded(self, slots: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64]]:
        """Which of ``slots`` belong to a flood target seen by an eviction round within the idle
        timeout (NOTE [flood cap]), and their aggregate keys."""
        cand = slots[self._evictable(slots) & (self._st[slots, S_LAST] <= (self._last_evict_ns or 0) + self._idle_ns)]
        words = self._service_words(cand)
        in_svc = self._known_floods(words)
        words[~in_svc, :3] = 0
        in_any = in_svc | self._known_floods(words)
        return cand[in_any], words[in_any]

    def _known_floods(self, words: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Which rows of ``words`` are aggregate keys of an eviction round (full rows compared)."""
        m = len(self._flood_keys)
        both = np.concatenate([self._flood_keys, words])
        gid = group_rows(both, hash_rows(both))
        known = np.zeros(len(both), np.bool_)
        known[gid[:m]] = True
        out: npt.NDArray[np.bool_] = known[gid[m:]]
        return out

    def _warn(self, clock: int) -> None:
        warn(
            self.on_warning,
            f"more than {self.max_open_flows:,} flows open at once (flows.max_open_flows): one-packet and "
            "handshake-only flows are aggregated per target service from here on (a flood?)",
        )

    def _aggregate(self, slots: npt.NDArray[np.int64], words: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
        """One record per distinct row of ``words`` (target service, or protocol) over ``slots``;
        returns those distinct rows."""
        if not len(slots):
            return words[:0]
        st, a = self._st[slots], self._arena.cols
        head = st[:, S_HEAD]
        svc = list(words.T)
        o, starts = _groups(svc, st[:, S_START])
        rows = head[o[starts]]
        group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(o)]))
        srcs = _distinct_per_group(group, a["src_hi"][head][o], a["src_lo"][head][o])
        sums = {c: np.add.reduceat(st[o, c], starts) for c in (S_N, S_B)}
        rep = self._arena.take(rows)
        n = len(starts)
        flows = FlowTable(
            src_hi=rep.src_hi, src_lo=rep.src_lo, dst_hi=svc[0][o][starts], dst_lo=svc[1][o][starts],
            src_port=st[o[starts], S_KSPORT].astype(np.uint16), dst_port=svc[2][o][starts].astype(np.uint16),
            proto=rep.proto, ip_version=rep.ip_version, first_ns=np.minimum.reduceat(st[o, S_START], starts),
            last_ns=np.maximum.reduceat(st[o, S_LAST], starts), fwd_pkts=np.ones(n, np.int64),
            bwd_pkts=np.zeros(n, np.int64), fwd_bytes=rep.ip_len.astype(np.int64), bwd_bytes=np.zeros(n, np.int64),
            file_id=rep.file_id, tunnel_key=rep.tunnel_key, agg_flows=np.diff(np.r_[starts, len(o)]).astype(np.int64),
            agg_pkts=sums[S_N], agg_bytes=sums[S_B], agg_srcs=srcs, order=np.arange(n, dtype=np.int64),
            offsets=np.arange(n + 1, dtype=np.int64), is_fwd=np.ones(n, np.bool_),
        )  # fmt: skip
        self.stats.aggregates += n
        self._out.append((rep, flows, self._arena.arrival[rows]))
        return words[o[starts]]


def _in_arrival_order(rows: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``rows`` sorted (the packets are copied out in arrival order, a near-sequential gather) and
    where each of ``rows`` lands among them (the flows' ``order``)."""
    if not len(rows):
        return rows, rows
    lo, span = int(rows.min()), int(rows.max()) - int(rows.min()) + 1
    if span <= 4 * len(rows):  # a mask over the span: linear, no sort
        mark = np.zeros(span, np.bool_)
        mark[rows - lo] = True
        kept = np.flatnonzero(mark) + lo
        return kept, (np.cumsum(mark) - 1)[rows - lo]
    by = np.argsort(rows, kind="stable")
    order = np.empty(len(rows), np.int64)
    order[by] = np.arange(len(rows))
    return rows[by], order


def warn(on_warning: Callable[[str], None] | None, message: str) -> None:
    """Hand ``message`` to the caller's warning callback, or log it when there is none."""
    if on_warning is not None:
        on_warning(message)
    else:
        log.warning("%s", message)


def _groups(cols: list[np.ndarray], tiebreak: np.ndarray) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Rows sorted by ``cols`` (full values compared), then ``tiebreak``; and where groups start."""
    o = np.lexsort((tiebreak, *cols[::-1])).astype(np.int64)
    new = np.zeros(len(o), np.bool_)
    new[:1] = True
    for c in cols:
        cs = c[o]
        new[1:] |= cs[1:] != cs[:-1]
    return o, np.flatnonzero(new)


def _distinct_per_group(
    group: npt.NDArray[np.int64], hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]
) -> npt.NDArray[np.int64]:
    """How many distinct (hi, lo) values each group holds."""
    o, starts = _groups([group.astype(np.uint64), hi, lo], np.zeros(len(group), np.int64))
    return np.bincount(group[o[starts]], minlength=int(group.max()) + 1 if len(group) else 0).astype(np.int64)


def assemble_flows(
    packets: PacketTable, *, idle_timeout_s: float, active_timeout_s: float, tcp_close_linger_s: float = 0.0,
    max_open_flows: int = DEFAULT_MAX_OPEN_FLOWS,
) -> FlowTable:  # fmt: skip
    """Group a table's packets into bidirectional flows (module docstring); ``order`` indexes it.

    The rows are taken in time order (stably), so any shuffle of them gives the same flows.
    Flows come in ``canonical_order``; packets within a flow by time, then row.
    """
    if packets.n_packets == 0:
        return FlowTable.empty()
    ts = packets.ts_ns
    perm = np.arange(packets.n_packets) if bool(np.all(ts[1:] >= ts[:-1])) else np.argsort(ts, kind="stable")
    asm = FlowAssembler(
        idle_timeout_s=idle_timeout_s, active_timeout_s=active_timeout_s, tcp_close_linger_s=tcp_close_linger_s,
        max_open_flows=max_open_flows,
    )  # fmt: skip
    asm._ingest(packets.take(perm))
    asm._release(np.flatnonzero(asm._live))
    _, flows, arrival = asm._drain()
    order = perm[arrival[flows.order]]
    flows = FlowTable(**flows.column_dict(), order=order, offsets=flows.offsets, is_fwd=flows.is_fwd)
    return reorder_flows(flows, canonical_order(flows))[0]


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


def with_aggregate_notes(flows: FlowTable, explanations: tuple[str, ...]) -> tuple[str, ...]:
    """``explanations`` with each flood aggregate's counts in words (NOTE [flood cap])."""
    rows = np.flatnonzero(flows.agg_flows > 0)
    if not len(rows):
        return explanations
    out = list(explanations) if explanations else [""] * flows.n_flows
    for i in rows.tolist():
        target = "many targets" if flows.dst_hi[i] == 0 and flows.dst_lo[i] == 0 else (
            f"{format_ip(flows.dst_hi[i], flows.dst_lo[i])} port {int(flows.dst_port[i])}"
        )  # fmt: skip
        out[i] = (
            f"flood: {int(flows.agg_flows[i]):,} one-packet or handshake-only flows ({int(flows.agg_pkts[i]):,} "
            f"packets, {int(flows.agg_bytes[i]):,} bytes) from {int(flows.agg_srcs[i]):,} sources to {target}, "
            "aggregated past flows.max_open_flows"
        )
    return tuple(out)
