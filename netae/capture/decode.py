"""Decode raw capture records into a PacketTable: one compiled pass over a batch, tunnels opened.

NOTE [decode kernel]: ``_decode_kernel`` walks every record once and writes every PacketTable
column at the packet's output row; a skipped record gets a reason code (``skips.Skip``) and a
value instead, which ``skips.count_skips`` words. The kernel is split by layer: the link layer
(``_link``, ``_after_ethertype``, ``_mpls``, ``_pppoe``), the IP header (``_ip4``, ``_ip6``), the
tunnel found behind it (``_tunnel``: IP-in-IP, GRE and the UDP tunnels) and the transport
header (``_transport``). The plain numpy decoder it replaced lives on as a test oracle in
``tests/reference/decode_numpy.py``.

NOTE [decapsulation]: where an IP packet carries another packet (a tunnel of
``tunnels.NAMES``), the inner packet is the row: its addresses, ports, lengths, flags and
DNS name are what the table holds, and ``ip_len`` comes from the inner IP header. The innermost
encapsulation is described by the tunnel columns (NOTE [tunnel columns] in tables.py). A tunnel
header cut short or malformed skips the record under its own reason; a payload the tunnel does
not say is IP or Ethernet (PPTP's encrypted PPP, a GTP-U echo, a GRE keepalive of an unknown
type) leaves the outer packet as the row, so no traffic disappears.

NOTE [captured bytes]: a field is read only when it lies inside its record's captured bytes
(``offset + caplen``); reads past the buffer return 0. Sizes (``ip_len``, ``payload_len``) come
from the IP header, so packets cut by the snap length keep their original size; their missing
fields are zero with ``has_ports`` false.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from netae.capture.dns import DNS_PORT, dns_questions
from netae.capture.linktypes import (
    ETHERTYPE_8021AD,
    ETHERTYPE_8021Q,
    ETHERTYPE_IP,
    ETHERTYPE_IPV6,
    ETHERTYPE_QINQ,
    LINK_TYPES,
)
from netae.capture.skips import Skip, count_skips
from netae.capture.tunnels import (
    T_ERSPAN,
    T_GENEVE,
    T_GRE,
    T_GRE_UDP,
    T_GTPU,
    T_IPIP,
    T_MPLS,
    T_PPPOE,
    T_PPTP,
    T_TEREDO,
    T_VXLAN,
)
from netae.config import TunnelSettings
from netae.jit import njit
from netae.protocols import (
    IPPROTO_AH,
    IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT,
    IPPROTO_GRE,
    IPPROTO_HOPOPTS,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_IPIP,
    IPPROTO_IPV6,
    IPPROTO_ROUTING,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
)
from netae.tables import TUNNEL_COLUMNS, PacketTable, RecordBatch, SkipCounts

__all__ = ["MAX_IPV6_EXT", "PAD_BYTES", "decode_records", "dns_columns"]

PAD_BYTES = 128  # zero bytes after the last record of a batch (NOTE [captured bytes])
MAX_IPV6_EXT = 8  # extension headers followed before giving up on the transport header
MAX_MPLS_LABELS = 16


ETHERTYPE_TEB = 0x6558  # transparent Ethernet bridging (GRE, Geneve)
ETHERTYPE_MPLS = 0x8847
ETHERTYPE_MPLS_MC = 0x8848
ETHERTYPE_PPPOE = 0x8864  # PPPoE session stage
ETHERTYPE_PPP = 0x880B  # PPTP's enhanced GRE
ETHERTYPE_ERSPAN2 = 0x88BE  # ERSPAN type I (no sequence number) and II
ETHERTYPE_ERSPAN3 = 0x22EB
PPP_IP = 0x0021
PPP_IPV6 = 0x0057
PPP_MPLS = 0x0281
PPP_MPLS_MC = 0x0283


_K_UNSUPPORTED, _K_ETHERNET, _K_ETHERTYPE, _K_NULL, _K_LOOP, _K_RAW, _K_IPV4, _K_IPV6, _K_PPP = range(9)
_KIND_CODES = {"ethernet": _K_ETHERNET, "ethertype": _K_ETHERTYPE, "null": _K_NULL, "loop": _K_LOOP,
               "raw": _K_RAW, "ipv4": _K_IPV4, "ipv6": _K_IPV6, "ppp": _K_PPP}  # fmt: skip

(_R_KEPT, _R_ETH_SHORT, _R_VLAN, _R_LLC, _R_ETHERTYPE, _R_LINK_SHORT, _R_AF, _R_RAW_EMPTY, _R_RAW_VER,
 _R_UNSUPPORTED, _R_V4_SHORT, _R_V4_VER, _R_V4_IHL, _R_V4_TOT, _R_V6_SHORT, _R_V6_VER, _R_MPLS_SHORT,
 _R_MPLS_DEPTH, _R_MPLS_PAYLOAD, _R_PPPOE_SHORT, _R_PPPOE_BAD, _R_PPP_PROTO, _R_TUN_SHORT, _R_TUN_BAD,
 _R_TUN_DEPTH) = (int(s) for s in list(Skip)[:25])  # fmt: skip

_I64 = npt.NDArray[np.int64]
_U8 = npt.NDArray[np.uint8]


def _link_tables() -> tuple[npt.NDArray[np.int8], _I64, _I64]:
    kind = np.zeros(1 << 16, np.int8)
    hlen = np.zeros(1 << 16, np.int64)
    et_at = np.zeros(1 << 16, np.int64)
    for dlt, info in LINK_TYPES.items():
        kind[dlt] = _KIND_CODES[info.kind]
        hlen[dlt] = info.header_len
        et_at[dlt] = info.ethertype_at
    return kind, hlen, et_at


_LT_KIND, _LT_HLEN, _LT_ET_AT = _link_tables()


def _udp_table(t: TunnelSettings) -> npt.NDArray[np.int8]:
    """UDP port -> tunnel kind (0: none); empty when decapsulation is off."""
    table = np.zeros(1 << 16, np.int8)
    if not t.enabled:
        return table
    for port, kind in (
        *((p, T_VXLAN) for p in t.vxlan_ports),
        (t.geneve_port, T_GENEVE),
        (t.gtpu_port, T_GTPU),
        (t.teredo_port, T_TEREDO),
        (t.gre_udp_port, T_GRE_UDP),
    ):
        if port:
            table[port] = kind
    return table


_DEFAULT_TUNNELS = TunnelSettings()
_UDP_CACHE: dict[TunnelSettings, npt.NDArray[np.int8]] = {}


def decode_records(
    batch: RecordBatch, *, file_id: int = 0, counts: SkipCounts | None = None, tunnels: TunnelSettings | None = None
) -> PacketTable:
    """One PacketTable row per IP packet of ``batch``, in record order; the rest counted by reason.

    Tunnelled packets are decapsulated as ``tunnels`` says (NOTE [decapsulation]; defaults when
    None). ``batch.data`` should end with ``PAD_BYTES`` zero bytes after its last record (the
    reader's batches do); otherwise a padded copy is made.
    """
    n = batch.n_records
    if counts is not None:
        counts.records += n
    if n == 0:
        return PacketTable.empty()
    end = batch.offsets + batch.caplen.astype(np.int64)
    buf = batch.data
    if len(buf) < int(end.max()) + PAD_BYTES:
        buf = np.concatenate([buf, np.zeros(int(end.max()) + PAD_BYTES - len(buf), np.uint8)])
    t = tunnels or _DEFAULT_TUNNELS
    udp = _UDP_CACHE.get(t)
    if udp is None:
        udp = _UDP_CACHE[t] = _udp_table(t)
    cols: dict[str, np.ndarray] = {
        name: (np.zeros if name in TUNNEL_COLUMNS else np.empty)(n, dt) for name, dt in _KERNEL_COLUMNS
    }
    reason = np.empty(n, np.int8)
    value = np.empty(n, np.int64)
    m, tso = _decode_kernel(
        buf, batch.offsets, batch.caplen, batch.origlen, batch.linktype, batch.ts_ns,
        _LT_KIND, _LT_HLEN, _LT_ET_AT, udp, t.max_depth if t.enabled else 0, reason, value, *cols.values(),
    )  # fmt: skip
    m = int(m)
    if counts is not None:
        counts.packets += m
        if tso and not any(w.startswith("IPv4 total length 0") for w in counts.warnings or []):
            counts.warn("IPv4 total length 0 (segmentation offload): length taken from the frame")
        if m < n:
            count_skips(counts, reason, value, batch.linktype)
    out = {name: arr[:m] for name, arr in cols.items()}
    l4, rec_end = out.pop("l4_off"), out.pop("rec_end")
    sport, dport = out["src_port"], out["dst_port"]
    dns_rows = np.flatnonzero(
        out["has_ports"] & (out["proto"] == IPPROTO_UDP) & ((sport == DNS_PORT) | (dport == DNS_PORT))
    )
    out.update(dns_columns(buf, dns_rows, l4[dns_rows] + 8, rec_end[dns_rows], m))
    return PacketTable(**out, file_id=np.full(m, file_id, np.int32))


def dns_columns(buf: _U8, dns_rows: _I64, start: _I64, end: _I64, m: int) -> dict[str, np.ndarray]:
    """The PacketTable ``dns_*`` columns (m rows): question facts at ``dns_rows``, zeros elsewhere."""
    dns = dns_questions(buf, start, end)
    cols: dict[str, np.ndarray] = {}
    for name, dt, values in (
        ("dns_qname_len", np.uint8, dns.qname_len),
        ("dns_label_len", np.uint8, dns.label_len),
        ("dns_label_entropy", np.float32, dns.label_entropy),
        ("dns_name_hash", np.uint64, dns.name_hash),
        ("dns_parent_hash", np.uint64, dns.parent_hash),
    ):
        col = np.zeros(m, dt)
        col[dns_rows] = values
        cols[name] = col
    return cols


_KERNEL_COLUMNS: tuple[tuple[str, type], ...] = (
    ("ts_ns", np.int64),
    ("src_hi", np.uint64),
    ("src_lo", np.uint64),
    ("dst_hi", np.uint64),
    ("dst_lo", np.uint64),
    ("src_port", np.uint16),
    ("dst_port", np.uint16),
    ("proto", np.uint8),
    ("ip_version", np.uint8),
    ("ip_len", np.uint32),
    ("payload_len", np.uint32),
    ("tcp_flags", np.uint8),
    ("tcp_window", np.uint16),
    ("icmp_type", np.uint8),
    ("icmp_code", np.uint8),
    ("ttl", np.uint8),
    ("ip_id", np.uint32),
    ("frag_offset", np.uint16),
    ("more_fragments", np.bool_),
    ("has_ports", np.bool_),
    ("tunnel_key", np.uint64),
    ("tunnel_id", np.uint32),
    ("outer_src_hi", np.uint64),
    ("outer_src_lo", np.uint64),
    ("outer_dst_hi", np.uint64),
    ("outer_dst_lo", np.uint64),
    ("l4_off", np.int64),  # not PacketTable columns: where DNS parsing reads (dropped after)
    ("rec_end", np.int64),
)


# --- bytes ---------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _r8(buf: Any, p: int) -> Any:  # pragma: no cover - compiled
    if p < 0 or p >= len(buf):
        return 0
    return np.int64(buf[p])


@njit(cache=True, nogil=True)
def _r16(buf: Any, p: int) -> Any:  # pragma: no cover - compiled
    if p < 0 or p + 2 > len(buf):
        return 0
    return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])


@njit(cache=True, nogil=True)
def _r32(buf: Any, p: int) -> Any:  # pragma: no cover - compiled
    if p < 0 or p + 4 > len(buf):
        return 0
    return (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3])


@njit(cache=True, nogil=True)
def _r64(buf: Any, p: int) -> Any:  # pragma: no cover - compiled
    return (np.uint64(_r32(buf, p)) << np.uint64(32)) | np.uint64(_r32(buf, p + 4))


@njit(cache=True, nogil=True)
def _is_vlan(et: int) -> bool:  # pragma: no cover - compiled
    return et == ETHERTYPE_8021Q or et == ETHERTYPE_8021AD or et == ETHERTYPE_QINQ  # noqa: SIM109 - numba


@njit(cache=True, nogil=True)
def _is_ext(p: int) -> bool:  # pragma: no cover - compiled
    hop_or_dst = p == IPPROTO_HOPOPTS or p == IPPROTO_DSTOPTS  # noqa: SIM109 - numba
    return hop_or_dst or p == IPPROTO_ROUTING or p == IPPROTO_FRAGMENT or p == IPPROTO_AH  # noqa: SIM109


# --- link layer ----------------------------------------------------------------------------------
# Each returns (code, value, ip_version, l3, tunnel kind, tunnel id); kind 0 when none was opened.


@njit(cache=True, nogil=True)
def _mpls(buf: Any, p: int, end: int) -> Any:  # pragma: no cover - compiled
    """An MPLS label stack at ``p``: the IP packet behind its bottom label; id is the top label."""
    top = -1
    for _ in range(MAX_MPLS_LABELS):
        if p + 4 > end:
            return _R_MPLS_SHORT, 0, 0, p, T_MPLS, 0
        w = _r32(buf, p)
        if top < 0:
            top = w >> 12
        p += 4
        if (w >> 8) & 1:  # bottom of stack
            if p >= end:
                return _R_MPLS_SHORT, 0, 0, p, T_MPLS, top
            nib = _r8(buf, p) >> 4
            if nib == 4 or nib == 6:  # noqa: SIM109 - numba
                return _R_KEPT, 0, nib, p, T_MPLS, top
            return _R_MPLS_PAYLOAD, nib, 0, p, T_MPLS, top
    return _R_MPLS_DEPTH, 0, 0, p, T_MPLS, top


@njit(cache=True, nogil=True)
def _ppp(buf: Any, p: int, end: int, kind: int, tid: int) -> Any:  # pragma: no cover - compiled
    """A PPP frame at ``p``: address and control fields (optional), protocol (1 or 2 bytes)."""
    if p + 2 <= end and _r16(buf, p) == 0xFF03:
        p += 2
    proto = _r8(buf, p)
    if proto & 1:  # protocol field compression: one byte
        p += 1
    else:
        proto = _r16(buf, p)
        p += 2
    if p > end:
        return _R_LINK_SHORT, 0, 0, p, kind, tid
    if proto == PPP_IP or proto == PPP_IPV6:  # noqa: SIM109 - numba
        return _R_KEPT, 0, 4 if proto == PPP_IP else 6, p, kind, tid
    if proto == PPP_MPLS or proto == PPP_MPLS_MC:  # noqa: SIM109 - numba
        return _mpls(buf, p, end)
    return _R_PPP_PROTO, proto, 0, p, kind, tid


@njit(cache=True, nogil=True)
def _pppoe(buf: Any, p: int, end: int) -> Any:  # pragma: no cover - compiled
    """A PPPoE session header and PPP protocol at ``p``; id is the session id."""
    if p + 8 > end:
        return _R_PPPOE_SHORT, 0, 0, p, T_PPPOE, 0
    session = _r16(buf, p + 2)
    if _r8(buf, p) != 0x11 or _r8(buf, p + 1) != 0:
        return _R_PPPOE_BAD, 0, 0, p, T_PPPOE, session
    return _ppp(buf, p + 6, end, T_PPPOE, session)


@njit(cache=True, nogil=True, inline="always")
def _after_ethertype(buf: Any, et: int, p: int, end: int, decap: bool) -> Any:  # pragma: no cover - compiled
    """What follows an EtherType field ending at ``p``: VLAN tags (up to 3), then IP, MPLS or PPPoE."""
    depth = 0
    too_many = False
    while _is_vlan(et):
        if depth == 3:
            too_many = True
            break
        p += 4
        et = _r16(buf, p - 2)
        depth += 1
    if p > end:
        return _R_ETH_SHORT, 0, 0, p, 0, 0
    if too_many:
        return _R_VLAN, 0, 0, p, 0, 0
    if et == ETHERTYPE_IP:
        return _R_KEPT, 0, 4, p, 0, 0
    if et == ETHERTYPE_IPV6:
        return _R_KEPT, 0, 6, p, 0, 0
    if decap and (et == ETHERTYPE_MPLS or et == ETHERTYPE_MPLS_MC):  # noqa: SIM109 - numba
        return _mpls(buf, p, end)
    if decap and et == ETHERTYPE_PPPOE:
        return _pppoe(buf, p, end)
    if et < 0x0600:
        return _R_LLC, 0, 0, p, 0, 0
    return _R_ETHERTYPE, et, 0, p, 0, 0


@njit(cache=True, nogil=True, inline="always")
def _ethernet(buf: Any, p: int, end: int, decap: bool) -> Any:  # pragma: no cover - compiled
    return _after_ethertype(buf, _r16(buf, p + 12), p + 14, end, decap)


@njit(cache=True, nogil=True, inline="always")
def _link(buf: Any, off: int, end: int, kind: int, hlen: int, et_at: int, decap: bool) -> Any:  # pragma: no cover
    """The link layer of one record, by link-type kind."""
    if kind == _K_ETHERNET:
        return _ethernet(buf, off, end, decap)
    if kind == _K_ETHERTYPE:
        if off + hlen > end:
            return _R_LINK_SHORT, 0, 0, off, 0, 0
        return _after_ethertype(buf, _r16(buf, off + et_at), off + hlen, end, decap)
    if kind == _K_NULL or kind == _K_LOOP:  # noqa: SIM109 - numba
        if off + 4 > end:
            return _R_LINK_SHORT, 0, 0, off + 4, 0, 0
        af = _r32(buf, off)
        if kind == _K_NULL:  # the capturing host's byte order: a small value in one of the two
            sw = ((af & 0xFF) << 24) | ((af & 0xFF00) << 8) | ((af >> 8) & 0xFF00) | (af >> 24)
            if sw < 256:
                af = sw
        if af == 2:
            return _R_KEPT, 0, 4, off + 4, 0, 0
        if af == 24 or af == 28 or af == 30:  # noqa: SIM109 - numba
            return _R_KEPT, 0, 6, off + 4, 0, 0
        return _R_AF, af, 0, off + 4, 0, 0
    if kind == _K_RAW:
        if off >= end:
            return _R_RAW_EMPTY, 0, 0, off, 0, 0
        nib = _r8(buf, off) >> 4
        if nib == 4 or nib == 6:  # noqa: SIM109 - numba
            return _R_KEPT, 0, nib, off, 0, 0
        return _R_RAW_VER, nib, 0, off, 0, 0
    if kind == _K_IPV4:
        return _R_KEPT, 0, 4, off, 0, 0
    if kind == _K_IPV6:
        return _R_KEPT, 0, 6, off, 0, 0
    if kind == _K_PPP:
        return _ppp(buf, off, end, 0, 0)
    return _R_UNSUPPORTED, 0, 0, off, 0, 0


# --- IP ------------------------------------------------------------------------------------------
# Each writes the addresses, TTL, IP id and more-fragments flag of row ``m`` into ``o`` (src_hi,
# src_lo, dst_hi, dst_lo, ttl, ip_id, more_fragments) and returns (code, value, proto, ip_len,
# hdr_len, frag_off, l4, no_l4, tso). Writing into the output columns, not returning the fields,
# keeps the common path as fast as one flat loop.

_V4_TAG = 0xFFFF << 32


@njit(cache=True, nogil=True, inline="always")
def _ip4(buf: Any, l3: Any, end: Any, frame_left: Any, m: Any, o: Any) -> Any:  # pragma: no cover - compiled
    if l3 + 20 > end:
        return _R_V4_SHORT, 0, 0, 0, 0, 0, l3, True, False
    w0 = _r32(buf, l3)
    vihl = w0 >> 24
    ihl = (vihl & 15) * 4
    tot = w0 & 0xFFFF
    tso = False
    if vihl >> 4 != 4:
        return _R_V4_VER, vihl >> 4, 0, 0, 0, 0, l3, True, False
    if ihl < 20:
        return _R_V4_IHL, 0, 0, 0, 0, 0, l3, True, False
    if tot == 0:  # TCP segmentation offload: the host saw the segment before the NIC split it
        tot = max(frame_left, ihl)
        tso = True
    if tot < ihl:
        return _R_V4_TOT, 0, 0, 0, 0, 0, l3, True, False
    w1 = _r32(buf, l3 + 4)
    w2 = _r32(buf, l3 + 8)
    frag = w1 & 0xFFFF
    tag = np.uint64(_V4_TAG)
    o[0][m] = 0
    o[1][m] = np.uint64(_r32(buf, l3 + 12)) | tag
    o[2][m] = 0
    o[3][m] = np.uint64(_r32(buf, l3 + 16)) | tag
    o[4][m] = w2 >> 24
    o[5][m] = w1 >> 16
    o[6][m] = (frag & 0x2000) != 0
    return _R_KEPT, 0, (w2 >> 16) & 255, tot, ihl, (frag & 0x1FFF) * 8, l3 + ihl, False, tso


@njit(cache=True, nogil=True, inline="always")
def _ip6(buf: Any, l3: Any, end: Any, m: Any, o: Any) -> Any:  # pragma: no cover - compiled
    if l3 + 40 > end:
        return _R_V6_SHORT, 0, 0, 0, 0, 0, l3, True, False
    nib = _r8(buf, l3) >> 4
    if nib != 6:
        return _R_V6_VER, nib, 0, 0, 0, 0, l3, True, False
    nh = _r8(buf, l3 + 6)
    cur = l3 + 40
    frag_off = 0
    mf = False
    id6 = 0
    stopped = False
    for _ in range(MAX_IPV6_EXT):
        if not _is_ext(nh):
            break
        if cur + 8 > end:
            stopped = True
            break
        hl = _r8(buf, cur + 1)
        was_frag = nh == IPPROTO_FRAGMENT
        if was_frag:
            ln = 8
            fo = _r16(buf, cur + 2)
            frag_off = fo & 0xFFF8
            mf = (fo & 1) != 0
            id6 = _r32(buf, cur + 4)
        elif nh == IPPROTO_AH:
            ln = (hl + 2) * 4
        else:
            ln = (hl + 1) * 8
        nh = _r8(buf, cur)
        cur += ln
        if was_frag and frag_off != 0:  # a non-first fragment carries no transport header
            stopped = True
            break
    if _is_ext(nh):
        stopped = True
    o[0][m] = _r64(buf, l3 + 8)
    o[1][m] = _r64(buf, l3 + 16)
    o[2][m] = _r64(buf, l3 + 24)
    o[3][m] = _r64(buf, l3 + 32)
    o[4][m] = _r8(buf, l3 + 7)
    o[5][m] = id6
    o[6][m] = mf
    return _R_KEPT, 0, nh, _r16(buf, l3 + 4) + 40, cur - l3, frag_off, cur, stopped, False


# --- tunnels -------------------------------------------------------------------------------------
# Each returns (kind, code, value, ip_version, l3, tunnel id, symmetric id); kind 0 when the
# payload is not opened (the outer packet stays the row). The symmetric id goes into the flow key
# (NOTE [tunnel columns]): only identifiers that are the same in both directions by design (the
# VXLAN and Geneve VNI, the PPPoE session). GRE keys and ERSPAN sessions may differ by direction
# (mirrors mark rx and tx), GTP-U TEIDs, MPLS labels and PPTP call ids always do: keying on them
# would cut every connection in two halves, so they are kept as metadata only.


@njit(cache=True, nogil=True)
def _inner_ip(buf: Any, p: int, end: int, kind: int, tid: int, sym: int) -> Any:  # pragma: no cover
    """An IP packet at ``p``, its version from the first nibble (GTP-U, ERSPAN-less payloads)."""
    if p >= end:
        return kind, _R_TUN_SHORT, kind, 0, p, tid, sym
    nib = _r8(buf, p) >> 4
    if nib != 4 and nib != 6:  # noqa: SIM109 - numba
        return kind, _R_TUN_BAD, kind, 0, p, tid, sym
    return kind, _R_KEPT, 0, nib, p, tid, sym


@njit(cache=True, nogil=True)
def _inner_eth(buf: Any, p: int, end: int, kind: int, tid: int, sym: int) -> Any:  # pragma: no cover
    """An Ethernet frame at ``p`` (VXLAN, Geneve, GRE bridging, ERSPAN)."""
    code, val, ver, l3, lk, lid = _ethernet(buf, p, end, True)
    if lk != 0:  # MPLS or PPPoE inside the tunnel: the innermost encapsulation is reported
        return lk, code, val, ver, l3, lid, 0
    return kind, code, val, ver, l3, tid, sym


@njit(cache=True, nogil=True)
def _by_ethertype(buf: Any, et: int, p: int, end: int, kind: int, tid: int, sym: int) -> Any:  # pragma: no cover
    """The payload of a GRE or Geneve header by its protocol type; kind 0 for types not opened."""
    if et == ETHERTYPE_IP or et == ETHERTYPE_IPV6:  # noqa: SIM109 - numba
        if p + (20 if et == ETHERTYPE_IP else 40) > end:
            return kind, _R_TUN_SHORT, kind, 0, p, tid, sym
        return kind, _R_KEPT, 0, 4 if et == ETHERTYPE_IP else 6, p, tid, sym
    if et == ETHERTYPE_TEB:
        return _inner_eth(buf, p, end, kind, tid, sym)
    if et == ETHERTYPE_MPLS or et == ETHERTYPE_MPLS_MC:  # noqa: SIM109 - numba
        code, val, ver, l3, lk, lid = _mpls(buf, p, end)
        return lk, code, val, ver, l3, lid, 0
    if et == ETHERTYPE_PPP:
        return _ppp_payload(buf, p, end, kind, tid)
    return 0, _R_KEPT, 0, 0, p, 0, 0


@njit(cache=True, nogil=True)
def _erspan(buf: Any, et: int, p: int, end: int, seq: bool) -> Any:  # pragma: no cover - compiled
    """ERSPAN type I (no GRE sequence number, no header), II (8 bytes) or III (12, +8 optional)."""
    if et == ETHERTYPE_ERSPAN2 and not seq:
        return _inner_eth(buf, p, end, T_ERSPAN, 0, 0)
    hlen = 8 if et == ETHERTYPE_ERSPAN2 else 12
    if p + hlen > end:
        return T_ERSPAN, _R_TUN_SHORT, T_ERSPAN, 0, p, 0, 0
    ver = _r8(buf, p) >> 4
    session = _r16(buf, p + 2) & 0x3FF
    if ver != (1 if et == ETHERTYPE_ERSPAN2 else 2):
        return T_ERSPAN, _R_TUN_BAD, T_ERSPAN, 0, p, session, 0
    if et == ETHERTYPE_ERSPAN3 and _r8(buf, p + 11) & 1:  # optional platform-specific subheader
        hlen += 8
    return _inner_eth(buf, p + hlen, end, T_ERSPAN, session, 0)  # rx and tx may be two sessions


@njit(cache=True, nogil=True)
def _pptp(buf: Any, p: int, end: int, flags: int) -> Any:  # pragma: no cover - compiled
    """PPTP's enhanced GRE (version 1) carrying PPP; only PPP frames holding IP are opened."""
    hlen = 8 + (4 if flags & 0x1000 else 0) + (4 if flags & 0x0080 else 0)
    if p + hlen > end:
        return T_PPTP, _R_TUN_SHORT, T_PPTP, 0, p, 0, 0
    call = _r16(buf, p + 6)
    if not flags & 0x2000 or _r16(buf, p + 2) != ETHERTYPE_PPP:
        return T_PPTP, _R_TUN_BAD, T_PPTP, 0, p, call, 0
    if _r16(buf, p + 4) == 0:  # acknowledgement only
        return 0, _R_KEPT, 0, 0, p, 0, 0
    return _ppp_payload(buf, p + hlen, end, T_PPTP, call)


@njit(cache=True, nogil=True)
def _ppp_payload(buf: Any, q: int, end: int, kind: int, tid: int) -> Any:  # pragma: no cover - compiled
    """PPP inside GRE: IP (and MPLS) frames are opened; LCP, CCP and encrypted (MPPE) data stay."""
    code, val, ver, l3, lk, lid = _ppp(buf, q, end, kind, tid)
    if code == _R_PPP_PROTO or code == _R_LINK_SHORT:  # noqa: SIM109 - numba
        return 0, _R_KEPT, 0, 0, q, 0, 0
    return lk, code, val, ver, l3, lid, 0


@njit(cache=True, nogil=True)
def _gre(buf: Any, p: int, end: int, kind: int) -> Any:  # pragma: no cover - compiled
    """A GRE header at ``p`` (RFC 2784/2890, ERSPAN, PPTP) and what it carries."""
    if p + 4 > end:
        return kind, _R_TUN_SHORT, kind, 0, p, 0, 0
    flags = _r16(buf, p)
    version = flags & 7
    if version == 1:
        return _pptp(buf, p, end, flags)
    if version != 0 or flags & 0x4000:  # other versions; source routing (RFC 1701, obsolete)
        return kind, _R_TUN_BAD, kind, 0, p, 0, 0
    et = _r16(buf, p + 2)
    q = p + 4 + (4 if flags & 0x8000 else 0)
    key = 0
    if flags & 0x2000:
        key = _r32(buf, q)
        q += 4
    if flags & 0x1000:
        q += 4
    if q > end:
        return kind, _R_TUN_SHORT, kind, 0, p, 0, 0
    if et == ETHERTYPE_ERSPAN2 or et == ETHERTYPE_ERSPAN3:  # noqa: SIM109 - numba
        return _erspan(buf, et, q, end, (flags & 0x1000) != 0)
    return _by_ethertype(buf, et, q, end, kind, key, 0)  # keys may differ by direction: not in the flow key


@njit(cache=True, nogil=True)
def _vxlan_geneve(buf: Any, p: int, end: int, kind: int) -> Any:  # pragma: no cover - compiled
    if p + 8 > end:
        return kind, _R_TUN_SHORT, kind, 0, p, 0, 0
    vni = _r32(buf, p + 4) >> 8
    if kind == T_VXLAN:
        if not _r8(buf, p) & 0x08:  # the I flag: a valid VNI
            return kind, _R_TUN_BAD, kind, 0, p, vni, vni
        return _inner_eth(buf, p + 8, end, kind, vni, vni)
    b0 = _r8(buf, p)
    if b0 >> 6 != 0:
        return kind, _R_TUN_BAD, kind, 0, p, vni, vni
    q = p + 8 + (b0 & 0x3F) * 4  # options
    if q > end:
        return kind, _R_TUN_SHORT, kind, 0, p, vni, vni
    return _by_ethertype(buf, _r16(buf, p + 2), q, end, kind, vni, vni)


@njit(cache=True, nogil=True)
def _gtpu(buf: Any, p: int, end: int) -> Any:  # pragma: no cover - compiled
    """GTP-U v1 (3GPP TS 29.281): only G-PDUs (type 255) are opened; echo and others stay."""
    if p + 8 > end:
        return T_GTPU, _R_TUN_SHORT, T_GTPU, 0, p, 0, 0
    b0 = _r8(buf, p)
    teid = _r32(buf, p + 4)
    if b0 >> 5 != 1 or not b0 & 0x10:
        return T_GTPU, _R_TUN_BAD, T_GTPU, 0, p, teid, 0
    if _r8(buf, p + 1) != 255:
        return 0, _R_KEPT, 0, 0, p, 0, 0
    q = p + 8
    if b0 & 0x07:  # sequence number, N-PDU number and next extension header type
        if q + 4 > end:
            return T_GTPU, _R_TUN_SHORT, T_GTPU, 0, p, teid, 0
        nxt = _r8(buf, q + 3)
        q += 4
        while nxt != 0 and b0 & 0x04:
            ln = _r8(buf, q) * 4
            if ln == 0:
                return T_GTPU, _R_TUN_BAD, T_GTPU, 0, p, teid, 0
            if q + ln > end:
                return T_GTPU, _R_TUN_SHORT, T_GTPU, 0, p, teid, 0
            nxt = _r8(buf, q + ln - 1)
            q += ln
    return _inner_ip(buf, q, end, T_GTPU, teid, 0)


@njit(cache=True, nogil=True)
def _teredo(buf: Any, p: int, end: int, udp_end: int) -> Any:  # pragma: no cover - compiled
    """Teredo (RFC 4380): optional authentication and origin indications, then IPv6.

    As Zeek does, the payload counts as IPv6 only when its length field fills the UDP payload
    exactly (``udp_end``, from the UDP length): anything else on the port stays a UDP packet.
    """
    if p + 2 <= end and _r16(buf, p) == 1:  # authentication indicator
        p += 13 + _r8(buf, p + 2) + _r8(buf, p + 3)
    if p + 2 <= end and _r16(buf, p) == 0:  # origin indication
        p += 8
    if p + 40 > end or _r8(buf, p) >> 4 != 6 or p + 40 + _r16(buf, p + 4) != udp_end:
        return 0, _R_KEPT, 0, 0, p, 0, 0
    return T_TEREDO, _R_KEPT, 0, 6, p, 0, 0


@njit(cache=True, nogil=True)
def _tunnel(buf: Any, proto: int, l4: int, end: int, udp_kind: Any) -> Any:  # pragma: no cover - compiled
    """The tunnel carried by an IP packet's payload at ``l4`` (first fragment, not cut)."""
    if proto == IPPROTO_IPIP or proto == IPPROTO_IPV6:  # noqa: SIM109 - numba
        return T_IPIP, _R_KEPT, 0, 4 if proto == IPPROTO_IPIP else 6, l4, 0, 0
    if proto == IPPROTO_GRE:
        return _gre(buf, l4, end, T_GRE)
    if proto != IPPROTO_UDP or l4 + 8 > end:
        return 0, _R_KEPT, 0, 0, l4, 0, 0
    kind: Any = np.int64(udp_kind[_r16(buf, l4 + 2)])
    if kind == 0:
        kind = np.int64(udp_kind[_r16(buf, l4)])
        if kind == T_GTPU:  # from the source port only: an ephemeral port may be 2152 by chance
            out = _gtpu(buf, l4 + 8, end)
            return out if out[1] == _R_KEPT else (0, _R_KEPT, 0, 0, l4, 0, 0)
        if kind != T_TEREDO:  # the other tunnels are found by their destination port only
            return 0, _R_KEPT, 0, 0, l4, 0, 0
    p = l4 + 8
    if kind == T_VXLAN or kind == T_GENEVE:  # noqa: SIM109 - numba
        return _vxlan_geneve(buf, p, end, kind)
    if kind == T_GTPU:
        return _gtpu(buf, p, end)
    if kind == T_TEREDO:
        return _teredo(buf, p, end, l4 + _r16(buf, l4 + 4))
    return _gre(buf, p, end, T_GRE_UDP)


# --- one record ----------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _decap(buf: Any, ip: Any, off: Any, end: Any, origlen: Any, udp_kind: Any, max_depth: Any, m: Any, o: Any,
           t: Any) -> Any:  # fmt: skip  # pragma: no cover - compiled
    """Open the tunnels behind the IP header parsed into row ``m`` (``ip``: ``_ip4``'s result).

    Writes the tunnel columns of row ``m`` into ``t`` (tunnel_key, tunnel_id, outer src hi, lo,
    dst hi, lo) and returns (code, value, ip_version, and ``_ip4``'s fields for the innermost
    header); a tunnel found but not opened leaves ``ip`` as it was. The IPv4 and IPv6 results are
    unpacked into scalars: a tuple unified from both runs several times slower.
    """
    code, val, ver = _R_KEPT, 0, 0
    tk, tid, sym = 0, 0, 0
    depth = 0
    c, v, proto, ip_len, hdr_len, frag_off, l4, no_l4, tso = ip
    while True:
        if frag_off != 0 or o[6][m] or no_l4:  # fragments are not opened
            break
        nk, code, val, nver, nl3, ntid, nsym = _tunnel(buf, proto, l4, end, udp_kind)
        if nk == 0:
            code = _R_KEPT
            break
        depth += 1
        if code == _R_KEPT and depth > max_depth:
            code, val = _R_TUN_DEPTH, 0
        if code != _R_KEPT:
            break
        tk, tid, sym, ver = nk, ntid, nsym, nver
        t[2][m], t[3][m], t[4][m], t[5][m] = o[0][m], o[1][m], o[2][m], o[3][m]
        if nver == 4:
            c, v, proto, ip_len, hdr_len, frag_off, l4, no_l4, tso = _ip4(buf, nl3, end, origlen - (nl3 - off), m, o)
        else:
            c, v, proto, ip_len, hdr_len, frag_off, l4, no_l4, tso = _ip6(buf, nl3, end, m, o)
        if c != _R_KEPT:
            code, val = c, v
            break
    if tk != 0:
        t[0][m] = (np.uint64(tk) << np.uint64(56)) | np.uint64(sym & 0xFFFFFFFF)
        t[1][m] = tid & 0xFFFFFFFF
    return code, val, ver, (c, v, proto, ip_len, hdr_len, frag_off, l4, no_l4, tso)


@njit(cache=True, nogil=True, inline="always")
def _transport(buf: Any, proto: Any, l4: Any, end: Any, first: Any, icmp_proto: Any) -> Any:  # pragma: no cover
    """Ports (ICMP: type and code), TCP flags and window, and the transport header's length."""
    avail = end - l4
    is_tcp = first and proto == IPPROTO_TCP
    is_udp = first and proto == IPPROTO_UDP
    is_sctp = first and proto == IPPROTO_SCTP
    is_icmp = first and proto == icmp_proto
    ports = _r32(buf, l4)
    type_code = ports >> 16
    it = 0
    ic = 0
    if is_icmp and avail >= 2:
        it = type_code >> 8
        ic = type_code & 255
    if (is_tcp or is_udp or is_sctp) and avail >= 4:
        sport, dport, has = type_code, ports & 0xFFFF, True
    else:
        sport, dport, has = it, ic, is_icmp and avail >= 2
    w3 = _r32(buf, l4 + 12)
    doff_flags = w3 >> 16
    flags = doff_flags & 255 if is_tcp and avail >= 14 else 0
    window = w3 & 0xFFFF if is_tcp and avail >= 16 else 0
    if is_tcp:
        l4_hdr = (doff_flags >> 12) * 4 if avail >= 13 else 20
    elif is_udp or is_icmp:
        l4_hdr = 8
    elif is_sctp:
        l4_hdr = 12
    else:
        l4_hdr = 0
    return sport, dport, has, it, ic, flags, window, l4_hdr


@njit(cache=True, nogil=True, inline="always")
def _may_tunnel(proto: Any, l4: Any, end: Any, buf: Any, udp_kind: Any) -> Any:  # pragma: no cover - compiled
    """A cheap test before ``_decap``: IP-in-IP, GRE, or UDP to or from a tunnel port."""
    if proto == IPPROTO_UDP:
        return l4 + 8 <= end and (udp_kind[_r16(buf, l4 + 2)] != 0 or udp_kind[_r16(buf, l4)] != 0)
    return proto == IPPROTO_GRE or proto == IPPROTO_IPIP or proto == IPPROTO_IPV6  # noqa: SIM109 - numba


@njit(cache=True, nogil=True)
def _decode_kernel(  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    buf, offsets, caplen, origlen, linktype, ts_in, lt_kind, lt_hlen, lt_et_at, udp_kind, max_depth, reason, value,
    ts_ns, src_hi, src_lo, dst_hi, dst_lo, src_port, dst_port, proto_o, ip_version, ip_len_o, payload_len, tcp_flags,
    tcp_window, icmp_type_o, icmp_code_o, ttl_o, ip_id_o, frag_offset_o, more_fragments, has_ports_o, tunnel_key,
    tunnel_id, outer_src_hi, outer_src_lo, outer_dst_hi, outer_dst_lo, l4_off_o, rec_end_o,
):  # fmt: skip
    """Every record of a batch (NOTE [decode kernel]); returns (packets written, TSO seen).

    The tunnel columns must come zeroed: only rows inside a tunnel are written.
    """
    m = 0
    tso_seen = False
    o = (src_hi, src_lo, dst_hi, dst_lo, ttl_o, ip_id_o, more_fragments)
    t = (tunnel_key, tunnel_id, outer_src_hi, outer_src_lo, outer_dst_hi, outer_dst_lo)
    for i in range(len(offsets)):
        off = offsets[i]
        end = off + np.int64(caplen[i])
        dlt = np.int64(linktype[i])
        code, val, ver, l3, lk, lid = _link(buf, off, end, lt_kind[dlt], lt_hlen[dlt], lt_et_at[dlt], max_depth > 0)
        if code == _R_KEPT:
            if ver == 4:
                code, val, proto, ip_len, hdr_len, frag_off, l4, no_l4, tso = _ip4(
                    buf, l3, end, np.int64(origlen[i]) - (l3 - off), m, o
                )
            else:
                code, val, proto, ip_len, hdr_len, frag_off, l4, no_l4, tso = _ip6(buf, l3, end, m, o)
            if code == _R_KEPT and max_depth > 0 and _may_tunnel(proto, l4, end, buf, udp_kind):
                ip = (code, val, proto, ip_len, hdr_len, frag_off, l4, no_l4, tso)
                code, val, nver, ip = _decap(buf, ip, off, end, np.int64(origlen[i]), udp_kind, max_depth, m, o, t)
                _c, _v, proto, ip_len, hdr_len, frag_off, l4, no_l4, tso = ip
                ver = nver if nver else ver
            if lk != 0 and tunnel_key[m] == 0:  # MPLS or PPPoE in front of the (outermost) IP header
                tunnel_key[m] = (np.uint64(lk) << np.uint64(56)) | np.uint64(lid if lk == T_PPPOE else 0)
                tunnel_id[m] = lid
        reason[i] = code
        value[i] = val
        if code != _R_KEPT:
            t[0][m], t[1][m] = 0, 0  # a skipped row may have been written: clear it for the next one
            t[2][m], t[3][m], t[4][m], t[5][m] = 0, 0, 0, 0
            continue
        tso_seen = tso_seen or tso
        sp, dp, has, it, ic, flags, window, l4_hdr = _transport(
            buf, proto, l4, end, frag_off == 0 and not no_l4, IPPROTO_ICMP if ver == 4 else IPPROTO_ICMPV6
        )
        ts_ns[m] = ts_in[i]
        src_port[m], dst_port[m], has_ports_o[m] = sp, dp, has
        icmp_type_o[m], icmp_code_o[m], tcp_flags[m], tcp_window[m] = it, ic, flags, window
        proto_o[m], ip_version[m], ip_len_o[m] = proto, ver, ip_len
        payload_len[m] = max(ip_len - hdr_len - l4_hdr, 0)
        frag_offset_o[m] = frag_off
        l4_off_o[m], rec_end_o[m] = l4, end
        m += 1
    return m, tso_seen
