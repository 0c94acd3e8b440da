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
