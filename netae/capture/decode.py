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
    link_type_name,
)
from netae.protocols import (
    IPPROTO_AH,
    IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_ROUTING,
    IPPROTO_TCP,
    IPPROTO_UDP,
)
from netae.tables import PacketTable, RecordBatch, SkipCounts

__all__ = ["HAVE_KERNEL", "MAX_IPV6_EXT", "PAD_BYTES", "decode_records", "use_compiled"]

PAD_BYTES = 128  # zero bytes after the last record of a batch (NOTE [captured bytes])
MAX_IPV6_EXT = 8  # extension headers followed before giving up on the transport header


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


class _Path:
    compiled = True  # the numba kernel (NOTE [decode kernel]) when numba imports


_PATH = _Path()


def use_compiled(flag: bool) -> None:
    """Decode with the numba kernel (default) or the vectorised numpy code (tests compare both)."""
    _PATH.compiled = flag


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
    if _PATH.compiled and HAVE_KERNEL:
        return _decode_compiled(batch, buf, file_id, counts)
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
    dns_cols = _dns_columns(buf, dns_rows, l4[dns_rows] + 8, end[rows][dns_rows], m)

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


# --- compiled path ------------------------------------------------------------------------------
# NOTE [decode kernel]: ``_decode_kernel`` walks every record once and writes every PacketTable
# column at the packet's output row, with the same rules as the vectorised code above (which stays
# as the path without numba, and which tests compare with scapy like this one). A skipped record
# gets a reason code (``_R_*``) and a value; the caller turns them into the reason strings.

_K_UNSUPPORTED, _K_ETHERNET, _K_ETHERTYPE, _K_NULL, _K_LOOP, _K_RAW, _K_IPV4, _K_IPV6 = range(8)
_KIND_CODES = {"ethernet": _K_ETHERNET, "ethertype": _K_ETHERTYPE, "null": _K_NULL, "loop": _K_LOOP,
               "raw": _K_RAW, "ipv4": _K_IPV4, "ipv6": _K_IPV6}  # fmt: skip
(_R_KEPT, _R_ETH_SHORT, _R_VLAN, _R_LLC, _R_ETHERTYPE, _R_LINK_SHORT, _R_AF, _R_RAW_EMPTY, _R_RAW_VER,
 _R_UNSUPPORTED, _R_V4_SHORT, _R_V4_VER, _R_V4_IHL, _R_V4_TOT, _R_V6_SHORT, _R_V6_VER) = range(16)  # fmt: skip


def _link_tables() -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    kind = np.zeros(1 << 16, np.int8)
    hlen = np.zeros(1 << 16, np.int64)
    et_at = np.zeros(1 << 16, np.int64)
    for dlt, info in LINK_TYPES.items():
        kind[dlt] = _KIND_CODES[info.kind]
        hlen[dlt] = info.header_len
        et_at[dlt] = info.ethertype_at
    return kind, hlen, et_at


_LT_KIND, _LT_HLEN, _LT_ET_AT = _link_tables()


def _reason_text(code: int, value: int, dlt: int) -> str:
    name = LINK_TYPES[dlt].name if dlt in LINK_TYPES else link_type_name(dlt)
    return {
        _R_ETH_SHORT: "truncated Ethernet header",
        _R_VLAN: "more than 3 VLAN tags",
        _R_LLC: "802.3 frame without EtherType (LLC)",
        _R_ETHERTYPE: f"non-IP ethertype 0x{value:04x}",
        _R_LINK_SHORT: f"truncated {name} header",
        _R_AF: f"address family {value} on link type {name}",
        _R_RAW_EMPTY: "empty raw IP packet",
        _R_RAW_VER: f"raw IP packet with IP version {value}",
        _R_UNSUPPORTED: f"link type {dlt} ({name}) unsupported",
        _R_V4_SHORT: "truncated IPv4 header",
        _R_V4_VER: f"IP version {value} where IPv4 was expected",
        _R_V4_IHL: "IPv4 header length < 20",
        _R_V4_TOT: "IPv4 total length < header length",
        _R_V6_SHORT: "truncated IPv6 header",
        _R_V6_VER: f"IP version {value} where IPv6 was expected",
    }[code]


def _decode_compiled(batch: RecordBatch, buf: _U8, file_id: int, counts: SkipCounts | None) -> PacketTable:
    n = batch.n_records
    cols: dict[str, np.ndarray] = {name: np.empty(n, dt) for name, dt in _KERNEL_COLUMNS}
    reason = np.empty(n, np.int8)
    value = np.empty(n, np.int64)
    m, tso = _decode_kernel(
        buf, batch.offsets, batch.caplen, batch.origlen, batch.linktype, batch.ts_ns,
        _LT_KIND, _LT_HLEN, _LT_ET_AT, reason, value, *cols.values(),
    )  # fmt: skip
    m = int(m)
    if counts is not None:
        counts.packets += m
        if tso:
            _warn_once(counts, "IPv4 total length 0 (segmentation offload): length taken from the frame")
        if m < n:
            skipped = np.flatnonzero(reason != _R_KEPT)
            key = np.stack([reason[skipped].astype(np.int64), value[skipped], batch.linktype[skipped].astype(np.int64)])
            uniq, k = np.unique(key, axis=1, return_counts=True)
            for (code, val, dlt), c in zip(uniq.T.tolist(), k.tolist(), strict=True):
                counts.add(_reason_text(code, val, dlt), c)
    out = {name: arr[:m] for name, arr in cols.items()}
    l4, end = out.pop("l4_off"), out.pop("rec_end")
    sport, dport = out["src_port"], out["dst_port"]
    dns_rows = np.flatnonzero(
        out["has_ports"]
        & (out["proto"] == 17)
        & (out["frag_offset"] == 0)
        & ((sport == DNS_PORT) | (dport == DNS_PORT))
    )
    out.update(_dns_columns(buf, dns_rows, l4[dns_rows] + 8, end[dns_rows], m))
    return PacketTable(**out, file_id=np.full(m, file_id, np.int32))


def _dns_columns(buf: _U8, dns_rows: _I64, start: _I64, end: _I64, m: int) -> dict[str, np.ndarray]:
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
    ("l4_off", np.int64),  # not PacketTable columns: where DNS parsing reads (dropped after)
    ("rec_end", np.int64),
)

HAVE_KERNEL = False
_decode_kernel: Any = None

try:  # numba is a dependency; without it the vectorised path above gives the same tables
    from netae.jit import njit
except ImportError:  # pragma: no cover - exercised only without numba
    pass
else:

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
        return (
            (np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16) | (np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3])
        )

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

    @njit(cache=True, nogil=True)
    def _decode_kernel_nb(  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
        buf, offsets, caplen, origlen, linktype, ts_in, lt_kind, lt_hlen, lt_et_at, reason, value,
        ts_ns, src_hi, src_lo, dst_hi, dst_lo, src_port, dst_port, proto_o, ip_version, ip_len_o,
        payload_len, tcp_flags, tcp_window, icmp_type_o, icmp_code_o, ttl_o, ip_id_o, frag_offset_o,
        more_fragments, has_ports_o, l4_off_o, rec_end_o,
    ):  # fmt: skip
        n = len(offsets)
        m = 0
        tso_seen = False
        v4_tag = np.uint64(0xFFFF << 32)
        for i in range(n):
            off = offsets[i]
            end = off + np.int64(caplen[i])
            dlt = np.int64(linktype[i])
            kind = lt_kind[dlt]
            code = _R_KEPT
            val = 0
            ver = 0
            l3 = off
            proto = 0
            ip_len = 0
            hdr_len = 0
            frag_off = 0
            l4 = off
            no_l4 = False
            icmp_proto = 1
            # --- link layer ---------------------------------------------------------------------
            if kind == _K_ETHERNET:
                et = _r16(buf, off + 12)
                l3 = off + 14
                too_many = False
                depth = 0
                while _is_vlan(et):
                    if depth == 3:
                        too_many = True
                        break
                    l3 += 4
                    et = _r16(buf, l3 - 2)
                    depth += 1
                if l3 > end:
                    code = _R_ETH_SHORT
                elif too_many:
                    code = _R_VLAN
                elif et == ETHERTYPE_IP:
                    ver = 4
                elif et == ETHERTYPE_IPV6:
                    ver = 6
                elif et < 0x0600:
                    code = _R_LLC
                else:
                    code, val = _R_ETHERTYPE, et
            elif kind == _K_ETHERTYPE:
                l3 = off + lt_hlen[dlt]
                if l3 > end:
                    code = _R_LINK_SHORT
                else:
                    et = _r16(buf, off + lt_et_at[dlt])
                    if et == ETHERTYPE_IP:
                        ver = 4
                    elif et == ETHERTYPE_IPV6:
                        ver = 6
                    elif et < 0x0600:
                        code = _R_LLC
                    else:
                        code, val = _R_ETHERTYPE, et
            elif kind == _K_NULL or kind == _K_LOOP:  # noqa: SIM109 - numba
                l3 = off + 4
                if l3 > end:
                    code = _R_LINK_SHORT
                else:
                    af = _r32(buf, off)
                    if kind == _K_NULL:
                        sw = ((af & 0xFF) << 24) | ((af & 0xFF00) << 8) | ((af >> 8) & 0xFF00) | (af >> 24)
                        if sw < 256:
                            af = sw
                    if af == 2:
                        ver = 4
                    elif af == 24 or af == 28 or af == 30:
                        ver = 6
                    else:
                        code, val = _R_AF, af
            elif kind == _K_RAW:
                if off >= end:
                    code = _R_RAW_EMPTY
                else:
                    nib = _r8(buf, off) >> 4
                    if nib == 4 or nib == 6:
                        ver = nib
                    else:
                        code, val = _R_RAW_VER, nib
            elif kind == _K_IPV4:
                ver = 4
            elif kind == _K_IPV6:
                ver = 6
            else:
                code = _R_UNSUPPORTED
            # --- IP -----------------------------------------------------------------------------
            if ver == 4:
                if l3 + 20 > end:
                    code = _R_V4_SHORT
                else:
                    w0 = _r32(buf, l3)
                    vihl = w0 >> 24
                    ihl = (vihl & 15) * 4
                    tot = w0 & 0xFFFF
                    if vihl >> 4 != 4:
                        code, val = _R_V4_VER, vihl >> 4
                    elif ihl < 20:
                        code = _R_V4_IHL
                    else:
                        if tot == 0:
                            tot = max(np.int64(origlen[i]) - (l3 - off), ihl)
                            tso_seen = True
                        if tot < ihl:
                            code = _R_V4_TOT
                if code == _R_KEPT:
                    w1 = _r32(buf, l3 + 4)
                    w2 = _r32(buf, l3 + 8)
                    frag = w1 & 0xFFFF
                    src_hi[m] = 0
                    dst_hi[m] = 0
                    src_lo[m] = np.uint64(_r32(buf, l3 + 12)) | v4_tag
                    dst_lo[m] = np.uint64(_r32(buf, l3 + 16)) | v4_tag
                    proto = (w2 >> 16) & 255
                    ip_len = tot
                    hdr_len = ihl
                    ttl_o[m] = w2 >> 24
                    ip_id_o[m] = w1 >> 16
                    frag_off = (frag & 0x1FFF) * 8
                    more_fragments[m] = (frag & 0x2000) != 0
                    l4 = l3 + ihl
                    no_l4 = False
                    icmp_proto = 1
            elif ver == 6:
                if l3 + 40 > end:
                    code = _R_V6_SHORT
                else:
                    nib = _r8(buf, l3) >> 4
                    if nib != 6:
                        code, val = _R_V6_VER, nib
                if code == _R_KEPT:
                    nh = _r8(buf, l3 + 6)
                    cur = l3 + 40
                    frag_off = 0
                    mf = False
                    id6 = 0
                    stopped = False
                    for _ in range(MAX_IPV6_EXT):
                        if not _is_ext(nh) or stopped:
                            break
                        if cur + 8 > end:
                            stopped = True
                            break
                        hl = _r8(buf, cur + 1)
                        if nh == IPPROTO_FRAGMENT:
                            ln = 8
                            fo = _r16(buf, cur + 2)
                            frag_off = fo & 0xFFF8
                            mf = (fo & 1) != 0
                            id6 = _r32(buf, cur + 4)
                        elif nh == IPPROTO_AH:
                            ln = (hl + 2) * 4
                        else:
                            ln = (hl + 1) * 8
                        was_frag = nh == IPPROTO_FRAGMENT
                        nh = _r8(buf, cur)
                        cur += ln
                        if was_frag and frag_off != 0:
                            stopped = True
                    if _is_ext(nh):
                        stopped = True
                    src_hi[m] = _r64(buf, l3 + 8)
                    src_lo[m] = _r64(buf, l3 + 16)
                    dst_hi[m] = _r64(buf, l3 + 24)
                    dst_lo[m] = _r64(buf, l3 + 32)
                    proto = nh
                    ip_len = _r16(buf, l3 + 4) + 40
                    hdr_len = cur - l3
                    ttl_o[m] = _r8(buf, l3 + 7)
                    ip_id_o[m] = id6
                    more_fragments[m] = mf
                    l4 = cur
                    no_l4 = stopped
                    icmp_proto = 58
            else:
                pass
            if code != _R_KEPT or ver == 0:
                reason[i] = code
                value[i] = val
                continue
            reason[i] = _R_KEPT
            # --- transport ----------------------------------------------------------------------
            avail = end - l4
            first = frag_off == 0 and not no_l4
            is_tcp = first and proto == IPPROTO_TCP
            is_udp = first and proto == IPPROTO_UDP
            is_icmp = first and proto == icmp_proto
            tu = is_tcp or is_udp
            ports = _r32(buf, l4)
            type_code = ports >> 16
            it = 0
            ic = 0
            if is_icmp and avail >= 2:
                it = type_code >> 8
                ic = type_code & 255
            if tu and avail >= 4:
                src_port[m] = type_code
                dst_port[m] = ports & 0xFFFF
                has_ports_o[m] = True
            else:
                src_port[m] = it
                dst_port[m] = ic
                has_ports_o[m] = is_icmp and avail >= 2
            icmp_type_o[m] = it
            icmp_code_o[m] = ic
            w3 = _r32(buf, l4 + 12)
            doff_flags = w3 >> 16
            tcp_flags[m] = doff_flags & 255 if is_tcp and avail >= 14 else 0
            tcp_window[m] = w3 & 0xFFFF if is_tcp and avail >= 16 else 0
            if is_tcp:
                l4_hdr = (doff_flags >> 12) * 4 if avail >= 13 else 20
            elif is_udp or is_icmp:
                l4_hdr = 8
            else:
                l4_hdr = 0
            ts_ns[m] = ts_in[i]
            proto_o[m] = proto
            ip_version[m] = ver
            ip_len_o[m] = ip_len
            payload_len[m] = max(ip_len - hdr_len - l4_hdr, 0)
            frag_offset_o[m] = frag_off
            l4_off_o[m] = l4
            rec_end_o[m] = end
            m += 1
        return m, tso_seen

    _decode_kernel = _decode_kernel_nb
    HAVE_KERNEL = True
