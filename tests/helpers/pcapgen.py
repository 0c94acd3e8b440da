"""A tiny pcap/pcapng writer for tests: exact control over byte order, resolution and blocks.

Everything returns bytes; ``gzip_bytes`` wraps them. Timestamps are given in nanoseconds and
converted to each file's or interface's resolution by truncation.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "Interface",
    "Record",
    "Section",
    "gzip_bytes",
    "pcap_bytes",
    "pcapng_bytes",
    "ts_units",
]


@dataclass(frozen=True)
class Record:
    """One packet. ``block`` is the pcapng block type: ``epb``, ``spb`` or ``pb`` (obsolete)."""

    data: bytes
    ts_ns: int = 0
    origlen: int | None = None
    iface: int = 0
    block: str = "epb"


@dataclass(frozen=True)
class Interface:
    """A pcapng interface; ``tsresol`` is the raw option byte (None: default 10^-6)."""

    linktype: int = 1
    snaplen: int = 0
    tsresol: int | None = None
    tsoffset_s: int = 0


@dataclass(frozen=True)
class Section:
    interfaces: Sequence[Interface] = (Interface(),)
    records: Sequence[Record] = ()
    big_endian: bool = False
    unknown_blocks: int = 0  # custom blocks of unknown type written before the records
    version: tuple[int, int] = (1, 0)
    extra: Sequence[tuple[int, bytes]] = field(default_factory=tuple)  # (position, raw block)


def ts_units(ts_ns: int, tsresol: int | None) -> int:
    """``ts_ns`` in the units of an interface with option byte ``tsresol``."""
    if tsresol is None:
        tsresol = 6
    e = tsresol & 0x7F
    if tsresol & 0x80:
        return ts_ns * (1 << e) // 1_000_000_000
    return ts_ns * 10**e // 1_000_000_000


def pcap_bytes(
    records: Iterable[Record],
    *,
    linktype: int = 1,
    big_endian: bool = False,
    nanosecond: bool = False,
    snaplen: int = 65535,
    version: tuple[int, int] = (2, 4),
) -> bytes:
    """A classic pcap file."""
    bo = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    out = [struct.pack(bo + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen, linktype)]
    div = 1 if nanosecond else 1000
    for r in records:
        sec, frac = divmod(r.ts_ns, 1_000_000_000)
        orig = len(r.data) if r.origlen is None else r.origlen
        out.append(struct.pack(bo + "IIII", sec, frac // div, len(r.data), orig))
        out.append(r.data)
    return b"".join(out)


def _block(bo: str, btype: int, body: bytes) -> bytes:
    body = body + b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(bo + "II", btype, n) + body + struct.pack(bo + "I", n)


def _options(bo: str, opts: list[tuple[int, bytes]]) -> bytes:
    if not opts:
        return b""
    out = b"".join(struct.pack(bo + "HH", c, len(v)) + v + b"\0" * (-len(v) % 4) for c, v in opts)
    return out + struct.pack(bo + "HH", 0, 0)


def pcapng_bytes(sections: Sequence[Section]) -> bytes:
    """A pcapng file with one Section Header Block per section."""
    out: list[bytes] = []
    for s in sections:
        bo = ">" if s.big_endian else "<"
        blocks: list[bytes] = []
        blocks.append(_block(bo, 0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, s.version[0], s.version[1], -1)))
        for i in s.interfaces:
            opts: list[tuple[int, bytes]] = []
            if i.tsresol is not None:
                opts.append((9, bytes([i.tsresol])))
            if i.tsoffset_s:
                opts.append((14, struct.pack(bo + "q", i.tsoffset_s)))
            blocks.append(_block(bo, 1, struct.pack(bo + "HHI", i.linktype, 0, i.snaplen) + _options(bo, opts)))
        for k in range(s.unknown_blocks):
            blocks.append(_block(bo, 0x40000BAD + k, b"unknown block body" * (k + 1)))
        for r in s.records:
            orig = len(r.data) if r.origlen is None else r.origlen
            if r.block == "spb":
                blocks.append(_block(bo, 3, struct.pack(bo + "I", orig) + r.data))
                continue
            iface = s.interfaces[r.iface] if r.iface < len(s.interfaces) else Interface()
            units = ts_units(r.ts_ns - iface.tsoffset_s * 1_000_000_000, iface.tsresol)
            hi, lo = units >> 32, units & 0xFFFFFFFF
            if r.block == "pb":
                head = struct.pack(bo + "HHIIII", r.iface, 0, hi, lo, len(r.data), orig)
                blocks.append(_block(bo, 2, head + r.data))
            else:
                head = struct.pack(bo + "IIIII", r.iface, hi, lo, len(r.data), orig)
                blocks.append(_block(bo, 6, head + r.data))
        for pos, raw in sorted(s.extra, key=lambda e: e[0], reverse=True):
            blocks.insert(pos, raw)
        out.extend(blocks)
    return b"".join(out)


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# --- tunnels -------------------------------------------------------------------------------------
# Byte-exact encapsulations for the decapsulation tests: each takes the inner bytes (an Ethernet
# frame for the layer-2 tunnels, an IP packet for the others) and returns the outer frame's
# header bytes to put in front of them. ``n`` is the inner packet's length on the wire (the
# original length, which a snap length may have cut), for the outer length fields.

ETH_HEAD = bytes.fromhex("020000000002 020000000001")  # dst, src MAC


def ether(ethertype: int) -> bytes:
    return ETH_HEAD + struct.pack(">H", ethertype)


def ipv4_head(src: str, dst: str, proto: int, n: int, *, ident: int = 1) -> bytes:
    """A 20-byte IPv4 header (checksum left 0: the decoder does not check it)."""
    a = bytes(int(x) for x in src.split("."))
    b = bytes(int(x) for x in dst.split("."))
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + n, ident, 0, 64, proto, 0, a, b)


def ipv6_head(src: str, dst: str, nh: int, n: int) -> bytes:
    import ipaddress

    return (
        struct.pack(">IHBB", 6 << 28, n, nh, 64) + ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
    )


def udp_head(sport: int, dport: int, n: int) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + n, 0)


def gre_head(proto: int, *, key: int | None = None, seq: int | None = None, csum: bool = False) -> bytes:
    """GRE version 0 (RFC 2784/2890): optional checksum, key and sequence number."""
    flags = (0x8000 if csum else 0) | (0x2000 if key is not None else 0) | (0x1000 if seq is not None else 0)
    out = struct.pack(">HH", flags, proto)
    if csum:
        out += bytes(4)
    if key is not None:
        out += struct.pack(">I", key)
    if seq is not None:
        out += struct.pack(">I", seq)
    return out


def vxlan_head(vni: int) -> bytes:
    return struct.pack(">II", 0x08000000, vni << 8)


def geneve_head(vni: int, *, options: bytes = b"", proto: int = 0x6558) -> bytes:
    assert len(options) % 4 == 0
    return struct.pack(">BBHI", len(options) // 4, 0, proto, vni << 8) + options


def erspan2_head(session: int, vlan: int = 0) -> bytes:
    """ERSPAN type II header (version 1) after a GRE header with a sequence number."""
    return struct.pack(">HHI", (1 << 12) | vlan, session & 0x3FF, 0)


def erspan3_head(session: int, *, platform: bool = True) -> bytes:
    """ERSPAN type III header (version 2), with the optional platform subheader when asked."""
    head = struct.pack(">HHIHH", 2 << 12, session & 0x3FF, 0x12345678, 0, 1 if platform else 0)
    return head + (bytes(8) if platform else b"")


def gtpu_head(teid: int, n: int, *, ext: bool = True) -> bytes:
    """GTP-U v1 G-PDU; with ``ext`` a sequence number and one PDU session container extension."""
    if not ext:
        return struct.pack(">BBHI", 0x30, 255, n, teid)
    ext_hdr = bytes([1, 0x10, 0x05, 0])  # length 1 (4 bytes), content, next type 0
    tail = struct.pack(">HBB", 7, 0, 0x85) + ext_hdr
    return struct.pack(">BBHI", 0x36, 255, n + len(tail), teid) + tail


def pptp_head(call_id: int, n: int, *, seq: int = 1, ack: int | None = 5) -> bytes:
    """PPTP's enhanced GRE (version 1) with PPP address/control and protocol IPv4 (0x0021)."""
    flags = 0x2000 | 0x1000 | (0x0080 if ack is not None else 0) | 1
    head = struct.pack(">HHHHI", flags, 0x880B, n + 4, call_id, seq) + (struct.pack(">I", ack) if ack else b"")
    return head + b"\xff\x03\x00\x21"


def mpls_head(labels: Sequence[int]) -> bytes:
    return b"".join(
        struct.pack(">I", (lab << 12) | (0x100 if i == len(labels) - 1 else 0) | 64) for i, lab in enumerate(labels)
    )


def pppoe_head(session: int, n: int, *, ipv6: bool = False) -> bytes:
    return struct.pack(">BBHHH", 0x11, 0, session, n + 2, 0x0057 if ipv6 else 0x0021)
