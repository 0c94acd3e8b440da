"""Reference oracle: the vectorised numpy decoder netae used beside its compiled kernel.

It is not used by netae. Tests decode the same batches with it and with
``netae.capture.decode.decode_records`` and compare every column of plain (untunnelled) IP
traffic field by field; its skip reasons are the text that ``netae.capture.skips.describe`` gives
for the kernel's codes. It knows nothing of tunnels, MPLS, PPPoE or SCTP ports.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from netae.capture.decode import PAD_BYTES, dns_columns
from netae.capture.dns import DNS_PORT
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

MAX_IPV6_EXT = 8
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


class _Buf:
    """Big-endian fields at arbitrary byte offsets of one buffer: one 1-D gather per field.

    Byte-strided views (``strides=(1,)``) of the buffer as ``>u2``/``>u4``/``>u8`` read a whole
    field at any (unaligned) offset in one fancy-indexing pass. Offsets are clipped into the
    buffer; whether a field was captured is decided by the caller (NOTE [captured bytes]).
    """

    def __init__(self, buf: _U8) -> None:
        n = len(buf)
        self.v8 = buf
        self.v16 = np.ndarray((n - 1,), ">u2", buf, 0, (1,))
        self.v32 = np.ndarray((n - 3,), ">u4", buf, 0, (1,))
        self.v64 = np.ndarray((n - 7,), ">u8", buf, 0, (1,))
        self.last = n - 8

    def _at(self, base: _I64, k: int) -> _I64:
        at = base + k if k else base
        if len(at) and int(at.max()) > self.last:  # only hostile lengths get here
            at = np.minimum(at, self.last)
        return at

    def u8(self, base: _I64, k: int = 0) -> _I64:
        return self.v8[self._at(base, k)].astype(np.int64)

    def u16(self, base: _I64, k: int = 0) -> _I64:
        return self.v16[self._at(base, k)].astype(np.int64)

    def u32(self, base: _I64, k: int = 0) -> _I64:
        return self.v32[self._at(base, k)].astype(np.int64)

    def u64(self, base: _I64, k: int = 0) -> npt.NDArray[np.uint64]:
        return self.v64[self._at(base, k)].astype(np.uint64)


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


def _link_ethernet(b: _Buf, off: _I64, end: _I64, skips: _Skips) -> tuple[_I64, npt.NDArray[np.uint8]]:
    def is_tag(et: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        return np.isin(et, (ETHERTYPE_8021Q, ETHERTYPE_8021AD, ETHERTYPE_QINQ))

    et = b.u16(off, 12)
    l3 = off + 14
    too_many = np.zeros(len(off), np.bool_)
    tagged = np.flatnonzero(is_tag(et))
    for depth in range(4):  # up to 3 tags (QinQ and one more); rows leave as soon as untagged
        if len(tagged) == 0:
            break
        if depth == 3:
            too_many[tagged] = True
            break
        l3[tagged] += 4
        et[tagged] = b.u16(l3[tagged], -2)
        tagged = tagged[is_tag(et[tagged])]
    short = l3 > end
    too_many &= ~short
    skips.add("truncated Ethernet header", int(np.count_nonzero(short)))
    skips.add("more than 3 VLAN tags", int(np.count_nonzero(too_many)))
    ok = ~(short | too_many)
    ver = np.zeros(len(off), np.uint8)
    ver[ok] = _ethertype_version(et[ok], skips)
    return l3, ver


def _link_fixed(
    b: _Buf, off: _I64, end: _I64, skips: _Skips, *, header_len: int, ethertype_at: int, name: str
) -> tuple[_I64, npt.NDArray[np.uint8]]:
    l3 = off + header_len
    short = l3 > end
    skips.add(f"truncated {name} header", int(np.count_nonzero(short)))
    ver = np.zeros(len(off), np.uint8)
    ok = ~short
    et = b.u16(off[ok], ethertype_at)
    ver[ok] = _ethertype_version(et, skips)
    return l3, ver


def _link_af(
    b: _Buf, off: _I64, end: _I64, skips: _Skips, *, either_order: bool, name: str
) -> tuple[_I64, npt.NDArray[np.uint8]]:
    l3 = off + 4
    short = l3 > end
    skips.add(f"truncated {name} header", int(np.count_nonzero(short)))
    af = b.u32(off)
    if either_order:  # the capturing host's byte order: a small value in one of the two
        swapped = ((af & 0xFF) << 24) | ((af & 0xFF00) << 8) | ((af >> 8) & 0xFF00) | (af >> 24)
        af = np.where(swapped < 256, swapped, af)
    ver = np.zeros(len(off), np.uint8)
    ver[af == 2] = 4
    ver[(af == 24) | (af == 28) | (af == 30)] = 6
    skips.add_by_value(f"address family {{}} on link type {name}", af[(ver == 0) & ~short])
    ver[short] = 0
    return l3, ver


def _link_raw(b: _Buf, off: _I64, end: _I64, skips: _Skips) -> tuple[_I64, npt.NDArray[np.uint8]]:
    short = off >= end
    skips.add("empty raw IP packet", int(np.count_nonzero(short)))
    nib = b.u8(off) >> 4
    ver = np.where((nib == 4) | (nib == 6), nib, 0).astype(np.uint8)
    skips.add_by_value("raw IP packet with IP version {}", nib[(ver == 0) & ~short])
    ver[short] = 0
    return off.copy(), ver


def _link_layer(batch: RecordBatch, b: _Buf, off: _I64, end: _I64, skips: _Skips) -> tuple[_I64, npt.NDArray[np.uint8]]:
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
            l3_g, ver_g = _link_ethernet(b, o, e, skips)
        elif info.kind == "ethertype":
            l3_g, ver_g = _link_fixed(
                b, o, e, skips, header_len=info.header_len, ethertype_at=info.ethertype_at, name=info.name
            )
        elif info.kind in ("null", "loop"):
            l3_g, ver_g = _link_af(b, o, e, skips, either_order=info.kind == "null", name=info.name)
        elif info.kind == "raw":
            l3_g, ver_g = _link_raw(b, o, e, skips)
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


def decode_records_numpy(batch: RecordBatch, *, file_id: int = 0, counts: SkipCounts | None = None) -> PacketTable:
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
    b = _Buf(buf)
    l3, ver = _link_layer(batch, b, off, end, skips)

    # --- IPv4 -------------------------------------------------------------------------------
    r4 = np.flatnonzero(ver == 4)
    short4 = l3[r4] + 20 > end[r4]
    skips.add("truncated IPv4 header", int(np.count_nonzero(short4)))
    r4 = r4[~short4]
    a4 = l3[r4]
    w0 = b.u32(a4)  # version, IHL, TOS, total length
    vihl = w0 >> 24
    nib4 = vihl >> 4
    bad_ver = nib4 != 4
    skips.add_by_value("IP version {} where IPv4 was expected", nib4[bad_ver])
    ihl = (vihl & 15) * 4
    bad_ihl = ~bad_ver & (ihl < 20)
    skips.add("IPv4 header length < 20", int(np.count_nonzero(bad_ihl)))
    tot = w0 & 0xFFFF
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
    a4 = a4[ok4]
    ihl = ihl[ok4]
    tot = tot[ok4]
    w1 = b.u32(a4, 4)  # identification, flags, fragment offset
    w2 = b.u32(a4, 8)  # TTL, protocol, checksum
    frag4 = w1 & 0xFFFF

    # --- IPv6 -------------------------------------------------------------------------------
    r6 = np.flatnonzero(ver == 6)
    short6 = l3[r6] + 40 > end[r6]
    skips.add("truncated IPv6 header", int(np.count_nonzero(short6)))
    r6 = r6[~short6]
    nib6 = b.u8(l3[r6]) >> 4
    bad6 = nib6 != 6
    skips.add_by_value("IP version {} where IPv6 was expected", nib6[bad6])
    r6 = r6[~bad6]
    a6 = l3[r6]
    plen6 = b.u16(a6, 4)
    nh = b.u8(a6, 6)
    cur = a6 + 40
    end6 = end[r6]
    frag_off6 = np.zeros(len(r6), np.int64)
    mf6 = np.zeros(len(r6), np.bool_)
    id6 = np.zeros(len(r6), np.int64)
    stopped = np.zeros(len(r6), np.bool_)  # chain left before a transport header

    def is_ext(p: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        return np.isin(p, (IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_DSTOPTS, IPPROTO_AH))

    for _ in range(MAX_IPV6_EXT):
        act = np.flatnonzero(is_ext(nh) & ~stopped)
        if len(act) == 0:
            break
        c = cur[act]
        cut = c + 8 > end6[act]
        stopped[act[cut]] = True
        act, c = act[~cut], c[~cut]
        kind = nh[act]
        is_frag = kind == IPPROTO_FRAGMENT
        hlen = b.u8(c, 1)
        ln = np.where(is_frag, 8, np.where(kind == IPPROTO_AH, (hlen + 2) * 4, (hlen + 1) * 8))
        fr = act[is_frag]
        fo = b.u16(c[is_frag], 2)
        frag_off6[fr] = fo & 0xFFF8
        mf6[fr] = (fo & 1).astype(np.bool_)
        id6[fr] = b.u32(c[is_frag], 4)
        nh[act] = b.u8(c)
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
        out: np.ndarray = np.empty(m, dtype)
        if all4:
            out[:] = v4
            return out
        out[p4] = v4
        out[p6] = v6
        return out

    src_hi = scatter(np.uint64, 0, b.u64(a6, 8))
    dst_hi = scatter(np.uint64, 0, b.u64(a6, 24))
    src_lo = scatter(np.uint64, b.u32(a4, 12).astype(np.uint64) | _V4_LO_TAG, b.u64(a6, 16))
    dst_lo = scatter(np.uint64, b.u32(a4, 16).astype(np.uint64) | _V4_LO_TAG, b.u64(a6, 32))
    proto = scatter(np.int64, (w2 >> 16) & 255, nh)
    ip_version = scatter(np.uint8, 4, 6)
    ip_len = scatter(np.int64, tot, plen6 + 40)
    hdr_len = scatter(np.int64, ihl, cur - a6)
    ttl = scatter(np.uint8, w2 >> 24, b.u8(a6, 7))
    ip_id = scatter(np.uint32, w1 >> 16, id6)
    frag_offset = scatter(np.int64, (frag4 & 0x1FFF) * 8, frag_off6)
    more_fragments = scatter(np.bool_, (frag4 & 0x2000) != 0, mf6)
    l4 = scatter(np.int64, a4 + ihl, cur)
    no_l4 = scatter(np.bool_, False, stopped)
    is_v6 = scatter(np.bool_, False, True)

    # --- transport ----------------------------------------------------------------------------
    avail = end[rows] - l4
    first = (frag_offset == 0) & ~no_l4
    is_tcp = first & (proto == IPPROTO_TCP)
    is_udp = first & (proto == IPPROTO_UDP)
    is_icmp = first & np.where(is_v6, proto == IPPROTO_ICMPV6, proto == IPPROTO_ICMP)
    tu = is_tcp | is_udp
    has_ports = (tu & (avail >= 4)) | (is_icmp & (avail >= 2))
    has_icmp = is_icmp & (avail >= 2)
    ports = b.u32(l4)
    type_code = ports >> 16
    icmp_type = np.where(has_icmp, type_code >> 8, 0).astype(np.uint8)
    icmp_code = np.where(has_icmp, type_code & 255, 0).astype(np.uint8)
    tu_ports = tu & (avail >= 4)
    src_port = np.where(tu_ports, type_code, icmp_type).astype(np.uint16)
    dst_port = np.where(tu_ports, ports & 0xFFFF, icmp_code).astype(np.uint16)
    w3 = b.u32(l4, 12)  # TCP data offset, flags, window
    doff_flags = w3 >> 16
    tcp_flags = np.where(is_tcp & (avail >= 14), doff_flags & 255, 0).astype(np.uint8)
    tcp_window = np.where(is_tcp & (avail >= 16), w3 & 0xFFFF, 0).astype(np.uint16)
    tcp_hdr = np.where(avail >= 13, (doff_flags >> 12) * 4, 20)
    l4_hdr = np.where(is_tcp, tcp_hdr, np.where(is_udp | is_icmp, 8, 0))
    payload_len = np.clip(ip_len - hdr_len - l4_hdr, 0, None)
    # DNS question names (UDP port 53 either way), parsed for those rows only.
    dns_rows = np.flatnonzero(tu_ports & is_udp & ((src_port == DNS_PORT) | (dst_port == DNS_PORT)))
    dns_cols = dns_columns(buf, dns_rows, l4[dns_rows] + 8, end[rows][dns_rows], m)

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
        **dns_cols,
    )
