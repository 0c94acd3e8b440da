"""Decode raw capture records into a PacketTable, vectorised over a whole batch.

No Python loop runs per packet: header bytes are gathered with fancy indexing into small
``(n, width)`` uint8 matrices and combined into big-endian fields column by column. Loops here
run over distinct link types, over at most three VLAN tags and over at most ``MAX_IPV6_EXT``
IPv6 extension headers, each step for the whole batch.

NOTE [captured bytes]: a field is read only when it lies inside its record's captured bytes
(``offset + caplen``). The reader leaves ``PAD_BYTES`` zero bytes after the last record so a
gather never leaves the buffer; whatever a gather reads past ``caplen`` is masked out. Sizes
(``ip_len``, ``payload_len``) come from the IP header, so packets cut by the snap length keep
their original size; their missing fields are zero with ``has_ports`` false.
"""

from __future__ import annotations

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
    link_type_name,
)
from netae.tables import PacketTable, RecordBatch, SkipCounts

__all__ = ["MAX_IPV6_EXT", "PAD_BYTES", "decode_records"]

PAD_BYTES = 128  # zero bytes after the last record of a batch (NOTE [captured bytes])
MAX_IPV6_EXT = 8  # extension headers followed before giving up on the transport header

IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_DSTOPTS = 60

_V4_LO_TAG = np.uint64(0xFFFF << 32)
_ARANGE = np.arange(64, dtype=np.int64)

_I64 = npt.NDArray[np.int64]
_U8 = npt.NDArray[np.uint8]


def _gather(buf: _U8, base: _I64, width: int) -> _U8:
    """Bytes ``buf[base[i] : base[i] + width]`` as an ``(n, width)`` matrix (base clipped in range)."""
    start = np.minimum(base, len(buf) - width)
    out: _U8 = buf[start[:, None] + _ARANGE[:width]]
    return out


def _be16(g: _U8, k: int) -> npt.NDArray[np.int64]:
    return (g[:, k].astype(np.int64) << 8) | g[:, k + 1]


def _be32(g: _U8, k: int) -> npt.NDArray[np.int64]:
    return (_be16(g, k) << 16) | _be16(g, k + 2)


def _be64(g: _U8, k: int) -> npt.NDArray[np.uint64]:
    out: npt.NDArray[np.uint64] = np.ascontiguousarray(g[:, k : k + 8]).view(">u8").ravel().astype(np.uint64)
    return out


class _Skips:
    """Skip reasons for one batch; rows leave the batch exactly once, under one reason."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, reason: str, n: int) -> None:
        if n > 0:
            self.counts[reason] = self.counts.get(reason, 0) + int(n)

    def add_by_value(self, template: str, values: npt.NDArray[np.int64]) -> None:
        if len(values) == 0:
            return
        uniq, n = np.unique(values, return_counts=True)
        for v, k in zip(uniq.tolist(), n.tolist(), strict=True):
            self.add(template.format(v), k)


def _ethertype_version(et: npt.NDArray[np.int64], skips: _Skips) -> npt.NDArray[np.uint8]:
    ver = np.zeros(len(et), np.uint8)
    ver[et == ETHERTYPE_IP] = 4
    ver[et == ETHERTYPE_IPV6] = 6
    other = et[ver == 0]
    skips.add("802.3 frame without EtherType (LLC)", int(np.count_nonzero(other < 0x0600)))
    skips.add_by_value("non-IP ethertype 0x{:04x}", other[other >= 0x0600])
    return ver


def _link_ethernet(buf: _U8, off: _I64, end: _I64, skips: _Skips) -> tuple[_I64, npt.NDArray[np.uint8]]:
    g = _gather(buf, off, 26)
    et0, et1, et2, et3 = (_be16(g, k) for k in (12, 16, 20, 24))

    def is_tag(et: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        return (et == ETHERTYPE_8021Q) | (et == ETHERTYPE_8021AD) | (et == ETHERTYPE_QINQ)

    t0 = is_tag(et0)
    t1 = t0 & is_tag(et1)
    t2 = t1 & is_tag(et2)
    et = np.where(t2, et3, np.where(t1, et2, np.where(t0, et1, et0)))
    l3 = off + 14 + 4 * (t0.astype(np.int64) + t1 + t2)
    short = l3 > end
    too_many = ~short & t2 & is_tag(et3)
    skips.add("truncated Ethernet header", int(np.count_nonzero(short)))
    skips.add("more than 3 VLAN tags", int(np.count_nonzero(too_many)))
    et = np.where(short | too_many, -1, et)
    ver = np.zeros(len(off), np.uint8)
    ok = et >= 0
    ver[ok] = _ethertype_version(et[ok], skips)
    return l3, ver


def _link_fixed(
    buf: _U8, off: _I64, end: _I64, skips: _Skips, *, header_len: int, ethertype_at: int, name: str
) -> tuple[_I64, npt.NDArray[np.uint8]]:
    l3 = off + header_len
    short = l3 > end
    skips.add(f"truncated {name} header", int(np.count_nonzero(short)))
    ver = np.zeros(len(off), np.uint8)
    ok = ~short
    et = _be16(_gather(buf, off[ok], ethertype_at + 2), ethertype_at)
    ver[ok] = _ethertype_version(et, skips)
    return l3, ver


def _link_af(
    buf: _U8, off: _I64, end: _I64, skips: _Skips, *, either_order: bool, name: str
) -> tuple[_I64, npt.NDArray[np.uint8]]:
    l3 = off + 4
    short = l3 > end
    skips.add(f"truncated {name} header", int(np.count_nonzero(short)))
    g = _gather(buf, off, 4)
    af = _be32(g, 0)
    if either_order:
        g64 = g.astype(np.int64)
        le = g64[:, 0] | (g64[:, 1] << 8) | (g64[:, 2] << 16) | (g64[:, 3] << 24)
        af = np.where(le < 256, le, af)
    ver = np.zeros(len(off), np.uint8)
    ver[af == 2] = 4
    ver[(af == 24) | (af == 28) | (af == 30)] = 6
    skips.add_by_value(f"address family {{}} on link type {name}", af[(ver == 0) & ~short])
    ver[short] = 0
    return l3, ver


def _link_raw(buf: _U8, off: _I64, end: _I64, skips: _Skips) -> tuple[_I64, npt.NDArray[np.uint8]]:
    short = off >= end
    skips.add("empty raw IP packet", int(np.count_nonzero(short)))
    nib = (buf[np.minimum(off, len(buf) - 1)] >> 4).astype(np.int64)
    ver = np.where((nib == 4) | (nib == 6), nib, 0).astype(np.uint8)
    skips.add_by_value("raw IP packet with IP version {}", nib[(ver == 0) & ~short])
    ver[short] = 0
    return off.copy(), ver


def _link_layer(
    batch: RecordBatch, buf: _U8, off: _I64, end: _I64, skips: _Skips
) -> tuple[_I64, npt.NDArray[np.uint8]]:
    """Absolute offset of the IP header and the IP version the link layer announces (0: skip)."""
    lt = batch.linktype
    n = len(lt)
    if n and bool(np.all(lt == lt[0])):
        groups: list[tuple[int, npt.NDArray[np.int64] | None]] = [(int(lt[0]), None)]
    else:
        groups = [(int(d), np.flatnonzero(lt == d)) for d in np.unique(lt)]
    l3 = np.zeros(n, np.int64)
    ver = np.zeros(n, np.uint8)
    for dlt, rows in groups:
        o = off if rows is None else off[rows]
        e = end if rows is None else end[rows]
        info = LINK_TYPES.get(dlt)
        if info is None:
            skips.add(f"link type {dlt} ({link_type_name(dlt)}) unsupported", len(o))
            continue
        if info.kind == "ethernet":
            l3_g, ver_g = _link_ethernet(buf, o, e, skips)
        elif info.kind == "ethertype":
            l3_g, ver_g = _link_fixed(
                buf, o, e, skips, header_len=info.header_len, ethertype_at=info.ethertype_at, name=info.name
            )
        elif info.kind in ("null", "loop"):
            l3_g, ver_g = _link_af(buf, o, e, skips, either_order=info.kind == "null", name=info.name)
        elif info.kind == "raw":
            l3_g, ver_g = _link_raw(buf, o, e, skips)
        else:
            l3_g = o.copy()
            ver_g = np.full(len(o), 4 if info.kind == "ipv4" else 6, np.uint8)
        if rows is None:
            l3, ver = l3_g, ver_g
        else:
            l3[rows] = l3_g
            ver[rows] = ver_g
    return l3, ver


def _warn_once(counts: SkipCounts | None, message: str) -> None:
    if counts is not None and message not in (counts.warnings or []):
        counts.warn(message)


def decode_records(batch: RecordBatch, *, file_id: int = 0, counts: SkipCounts | None = None) -> PacketTable:
    """One PacketTable row per IP packet of ``batch``, in record order; the rest counted by reason.

    ``batch.data`` should end with ``PAD_BYTES`` zero bytes after its last record (the reader's
    batches do); otherwise a padded copy is made.
    """
    n = batch.n_records
    if counts is not None:
        counts.records += n
    if n == 0:
        return PacketTable.empty()
    off = batch.offsets
    end = off + batch.caplen.astype(np.int64)
    buf = batch.data
    if len(buf) < int(end.max()) + PAD_BYTES:
        buf = np.concatenate([buf, np.zeros(int(end.max()) + PAD_BYTES - len(buf), np.uint8)])
    skips = _Skips()
    l3, ver = _link_layer(batch, buf, off, end, skips)

    # --- IPv4 -------------------------------------------------------------------------------
    r4 = np.flatnonzero(ver == 4)
    short4 = l3[r4] + 20 > end[r4]
    skips.add("truncated IPv4 header", int(np.count_nonzero(short4)))
    r4 = r4[~short4]
    g4 = _gather(buf, l3[r4], 20)
    nib4 = (g4[:, 0] >> 4).astype(np.int64)
    bad_ver = nib4 != 4
    skips.add_by_value("IP version {} where IPv4 was expected", nib4[bad_ver])
    ihl = (g4[:, 0] & 15).astype(np.int64) * 4
    bad_ihl = ~bad_ver & (ihl < 20)
    skips.add("IPv4 header length < 20", int(np.count_nonzero(bad_ihl)))
    tot = _be16(g4, 2)
    tso = ~bad_ver & ~bad_ihl & (tot == 0)
    if tso.any():
        # TCP segmentation offload: the capturing host saw the segment before the NIC split it.
        frame = batch.origlen[r4].astype(np.int64) - (l3[r4] - off[r4])
        tot = np.where(tso, np.maximum(frame, ihl), tot)
        _warn_once(counts, "IPv4 total length 0 (segmentation offload): length taken from the frame")
    bad_tot = ~bad_ver & ~bad_ihl & (tot < ihl)
    skips.add("IPv4 total length < header length", int(np.count_nonzero(bad_tot)))
    ok4 = ~(bad_ver | bad_ihl | bad_tot)
    r4 = r4[ok4]
    g4 = g4[ok4]
    ihl = ihl[ok4]
    tot = tot[ok4]
    frag4 = _be16(g4, 6)

    # --- IPv6 -------------------------------------------------------------------------------
    r6 = np.flatnonzero(ver == 6)
    short6 = l3[r6] + 40 > end[r6]
    skips.add("truncated IPv6 header", int(np.count_nonzero(short6)))
    r6 = r6[~short6]
    g6 = _gather(buf, l3[r6], 40)
    nib6 = (g6[:, 0] >> 4).astype(np.int64)
    bad6 = nib6 != 6
    skips.add_by_value("IP version {} where IPv6 was expected", nib6[bad6])
    r6 = r6[~bad6]
    g6 = g6[~bad6]
    plen6 = _be16(g6, 4)
    nh = g6[:, 6].astype(np.int64)
    cur = l3[r6] + 40
    end6 = end[r6]
    frag_off6 = np.zeros(len(r6), np.int64)
    mf6 = np.zeros(len(r6), np.bool_)
    id6 = np.zeros(len(r6), np.int64)
    stopped = np.zeros(len(r6), np.bool_)  # chain left before a transport header

    def is_ext(p: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        return (
            (p == IPPROTO_HOPOPTS)
            | (p == IPPROTO_ROUTING)
            | (p == IPPROTO_FRAGMENT)
            | (p == IPPROTO_DSTOPTS)
            | (p == IPPROTO_AH)
        )

    for _ in range(MAX_IPV6_EXT):
        act = np.flatnonzero(is_ext(nh) & ~stopped)
        if len(act) == 0:
            break
        c = cur[act]
        cut = c + 8 > end6[act]
        stopped[act[cut]] = True
        act, c = act[~cut], c[~cut]
        e = _gather(buf, c, 8)
        kind = nh[act]
        is_frag = kind == IPPROTO_FRAGMENT
        ln = np.where(
            is_frag,
            8,
            np.where(kind == IPPROTO_AH, (e[:, 1].astype(np.int64) + 2) * 4, (e[:, 1].astype(np.int64) + 1) * 8),
        )
        fr = act[is_frag]
        fo = _be16(e[is_frag], 2)
        frag_off6[fr] = fo & 0xFFF8
        mf6[fr] = (fo & 1).astype(np.bool_)
        id6[fr] = _be32(e[is_frag], 4)
        nh[act] = e[:, 0]
        cur[act] = c + ln
        stopped[fr[frag_off6[fr] != 0]] = True  # a non-first fragment carries no transport header
    stopped |= is_ext(nh)

    # --- assemble rows in record order --------------------------------------------------------
    keep = np.zeros(n, np.bool_)
    keep[r4] = True
    keep[r6] = True
    rows = np.flatnonzero(keep)
    m = len(rows)
    all4 = len(r4) == m
    rank = np.cumsum(keep) - 1
    p4 = rank[r4]
    p6 = rank[r6]

    def scatter(dtype: type, v4: np.ndarray | int, v6: np.ndarray | int) -> np.ndarray:
        out = np.empty(m, dtype)
        if all4:
            out[:] = v4
            return out
        out[p4] = v4
        out[p6] = v6
        return out

    src_hi = scatter(np.uint64, 0, _be64(g6, 8))
    dst_hi = scatter(np.uint64, 0, _be64(g6, 24))
    src_lo = scatter(np.uint64, _be32(g4, 12).astype(np.uint64) | _V4_LO_TAG, _be64(g6, 16))
    dst_lo = scatter(np.uint64, _be32(g4, 16).astype(np.uint64) | _V4_LO_TAG, _be64(g6, 32))
    proto = scatter(np.int64, g4[:, 9], nh)
    ip_version = scatter(np.uint8, 4, 6)
    ip_len = scatter(np.int64, tot, plen6 + 40)
    hdr_len = scatter(np.int64, ihl, cur - l3[r6])
    ttl = scatter(np.uint8, g4[:, 8], g6[:, 7])
    ip_id = scatter(np.uint32, _be16(g4, 4), id6)
    frag_offset = scatter(np.int64, (frag4 & 0x1FFF) * 8, frag_off6)
    more_fragments = scatter(np.bool_, (frag4 & 0x2000) != 0, mf6)
    l4 = scatter(np.int64, l3[r4] + ihl, cur)
    no_l4 = scatter(np.bool_, False, stopped)
    is_v6 = scatter(np.bool_, False, True)

    # --- transport ----------------------------------------------------------------------------
    avail = end[rows] - l4
    first = (frag_offset == 0) & ~no_l4
    t = _gather(buf, np.maximum(l4, 0), 16)
    is_tcp = first & (proto == IPPROTO_TCP)
    is_udp = first & (proto == IPPROTO_UDP)
    is_icmp = first & np.where(is_v6, proto == IPPROTO_ICMPV6, proto == IPPROTO_ICMP)
    tu = is_tcp | is_udp
    has_ports = (tu & (avail >= 4)) | (is_icmp & (avail >= 2))
    has_icmp = is_icmp & (avail >= 2)
    icmp_type = np.where(has_icmp, t[:, 0], 0).astype(np.uint8)
    icmp_code = np.where(has_icmp, t[:, 1], 0).astype(np.uint8)
    tu_ports = tu & (avail >= 4)
    src_port = np.where(tu_ports, _be16(t, 0), icmp_type).astype(np.uint16)
    dst_port = np.where(tu_ports, _be16(t, 2), icmp_code).astype(np.uint16)
    tcp_flags = np.where(is_tcp & (avail >= 14), t[:, 13], 0).astype(np.uint8)
    tcp_window = np.where(is_tcp & (avail >= 16), _be16(t, 14), 0).astype(np.uint16)
    tcp_hdr = np.where(avail >= 13, (t[:, 12] >> 4).astype(np.int64) * 4, 20)
    l4_hdr = np.where(is_tcp, tcp_hdr, np.where(is_udp | is_icmp, 8, 0))
    payload_len = np.clip(ip_len - hdr_len - l4_hdr, 0, None)
    # DNS question names (UDP port 53 either way), parsed for those rows only.
    dns_rows = np.flatnonzero(tu_ports & is_udp & ((src_port == DNS_PORT) | (dst_port == DNS_PORT)))
    dns = dns_questions(buf, l4[dns_rows] + 8, end[rows][dns_rows])
    dns_qname_len = np.zeros(m, np.uint8)
    dns_label_len = np.zeros(m, np.uint8)
    dns_label_entropy = np.zeros(m, np.float32)
    dns_name_hash = np.zeros(m, np.uint64)
    dns_parent_hash = np.zeros(m, np.uint64)
    dns_qname_len[dns_rows] = dns.qname_len
    dns_label_len[dns_rows] = dns.label_len
    dns_label_entropy[dns_rows] = dns.label_entropy
    dns_name_hash[dns_rows] = dns.name_hash
    dns_parent_hash[dns_rows] = dns.parent_hash

    if counts is not None:
        counts.packets += m
        for reason, k in skips.counts.items():
            counts.add(reason, k)
    return PacketTable(
        ts_ns=batch.ts_ns[rows],
        src_hi=src_hi,
        src_lo=src_lo,
        dst_hi=dst_hi,
        dst_lo=dst_lo,
        src_port=src_port,
        dst_port=dst_port,
        proto=proto.astype(np.uint8),
        ip_version=ip_version,
        ip_len=ip_len.astype(np.uint32),
        payload_len=payload_len.astype(np.uint32),
        tcp_flags=tcp_flags,
        tcp_window=tcp_window,
        icmp_type=icmp_type,
        icmp_code=icmp_code,
        ttl=ttl,
        ip_id=ip_id,
        frag_offset=frag_offset.astype(np.uint16),
        more_fragments=more_fragments,
        has_ports=has_ports,
        file_id=np.full(m, file_id, np.int32),
        dns_qname_len=dns_qname_len,
        dns_label_len=dns_label_len,
        dns_label_entropy=dns_label_entropy,
        dns_name_hash=dns_name_hash,
        dns_parent_hash=dns_parent_hash,
    )
