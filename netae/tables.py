"""Columnar tables passed between pipeline stages: numpy arrays only, no object per packet.

NOTE [ragged]: ragged data is values plus offsets, as in Arrow's ListArray. Row ``i`` is
``values[offsets[i]:offsets[i + 1]]``; ``offsets`` is int64 of shape ``(n_rows + 1,)`` with
``offsets[0] == 0``, ``offsets[-1] == len(values)`` and never decreasing. Lengths are
``np.diff(offsets)``. Every ragged structure in netae follows this note.

NOTE [addresses]: an IP address is stored in 16-byte IPv6 form (IPv4 mapped as ``::ffff:a.b.c.d``)
split into two big-endian uint64 halves, ``*_hi`` and ``*_lo``; sorting by (hi, lo) is sorting by
the address bytes. ``format_ip`` turns them back into text.

``__post_init__`` runs O(1) checks only (dtypes, equal lengths, end offsets); ``validate()`` runs
the O(n) ones and is called in tests and at the capture boundary.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # type only: tables.py imports nothing of netae at run time
    from netae.incidents import Incidents

__all__ = [
    "IPV4_MAPPED_HI",
    "Features",
    "FlowTable",
    "PacketTable",
    "Ragged",
    "RecordBatch",
    "ScoreTable",
    "SkipCounts",
    "TUNNEL_COLUMNS",
    "canonical_order",
    "concat_flow_parts",
    "format_ip",
    "format_ips",
    "parse_ip",
    "reorder_flows",
]

# The high half of every IPv4-mapped address (::ffff:0:0/96 has hi == 0, lo >> 32 == 0xffff).
IPV4_MAPPED_HI = 0
_V4_LO_TAG = np.uint64(0xFFFF << 32)


def _check_dtype(name: str, arr: np.ndarray, dtype: Any) -> None:
    if arr.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must be {np.dtype(dtype)}, got {arr.dtype}")


def _check_columns(obj: Any, spec: dict[str, Any], n_name: str) -> int:
    n = -1
    for name, dtype in spec.items():
        arr = getattr(obj, name)
        if not isinstance(arr, np.ndarray) or arr.ndim != 1:
            raise TypeError(f"{type(obj).__name__}.{name} must be a 1-D numpy array")
        _check_dtype(f"{type(obj).__name__}.{name}", arr, dtype)
        if n < 0:
            n = len(arr)
        elif len(arr) != n:
            raise ValueError(f"{type(obj).__name__}.{name} has {len(arr)} rows, expected {n} ({n_name})")
    return max(n, 0)


def _check_offsets(name: str, offsets: np.ndarray, n_rows: int, n_values: int) -> None:
    _check_dtype(name, offsets, np.int64)
    if offsets.shape != (n_rows + 1,):
        raise ValueError(f"{name} must have shape ({n_rows + 1},), got {offsets.shape}")
    if offsets[0] != 0 or offsets[-1] != n_values:
        raise ValueError(f"{name} must start at 0 and end at {n_values}")


def _validate_offsets(name: str, offsets: np.ndarray) -> None:
    if len(offsets) > 1 and np.any(np.diff(offsets) < 0):
        raise ValueError(f"{name} must never decrease (NOTE [ragged])")


@dataclass(frozen=True, slots=True)
class Ragged:
    """Values plus offsets (NOTE [ragged]); ``values`` may have trailing dimensions."""

    values: np.ndarray
    offsets: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        _check_offsets("Ragged.offsets", self.offsets, len(self.offsets) - 1, len(self.values))

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def validate(self) -> None:
        _validate_offsets("Ragged.offsets", self.offsets)


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """Raw capture records: one contiguous byte buffer and per-record columns.

    Record ``i`` is ``data[offsets[i] : offsets[i] + caplen[i]]``. ``linktype`` is per record
    because pcapng may mix interfaces. ``origlen`` is the length on the wire (never less than
    ``caplen``; readers fix records that claim otherwise).
    """

    data: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.int64]
    caplen: npt.NDArray[np.uint32]
    origlen: npt.NDArray[np.uint32]
    ts_ns: npt.NDArray[np.int64]
    linktype: npt.NDArray[np.uint16]

    def __post_init__(self) -> None:
        _check_dtype("RecordBatch.data", self.data, np.uint8)
        _check_columns(
            self,
            {"offsets": np.int64, "caplen": np.uint32, "origlen": np.uint32, "ts_ns": np.int64, "linktype": np.uint16},
            "records",
        )

    @property
    def n_records(self) -> int:
        return len(self.offsets)

    def validate(self) -> None:
        if self.n_records and (
            int(self.offsets.min()) < 0 or int((self.offsets + self.caplen.astype(np.int64)).max()) > len(self.data)
        ):
            raise ValueError("RecordBatch record extends past its buffer")


# The tunnel columns (NOTE [tunnel columns]) of both PacketTable and FlowTable.
_TUNNEL_DTYPES: dict[str, Any] = {
    "tunnel_key": np.uint64,
    "tunnel_id": np.uint32,
    "outer_src_hi": np.uint64,
    "outer_src_lo": np.uint64,
    "outer_dst_hi": np.uint64,
    "outer_dst_lo": np.uint64,
}
_PACKET_COLUMNS: dict[str, Any] = {
    "ts_ns": np.int64,
    "src_hi": np.uint64,
    "src_lo": np.uint64,
    "dst_hi": np.uint64,
    "dst_lo": np.uint64,
    "src_port": np.uint16,
    "dst_port": np.uint16,
    "proto": np.uint8,
    "ip_version": np.uint8,
    "ip_len": np.uint32,
    "payload_len": np.uint32,
    "tcp_flags": np.uint8,
    "tcp_window": np.uint16,
    "icmp_type": np.uint8,
    "icmp_code": np.uint8,
    "ttl": np.uint8,
    "ip_id": np.uint32,
    "frag_offset": np.uint16,
    "more_fragments": np.bool_,
    "has_ports": np.bool_,
    "file_id": np.int32,
    "dns_qname_len": np.uint8,
    "dns_label_len": np.uint8,
    "dns_label_entropy": np.float32,
    "dns_name_hash": np.uint64,
    "dns_parent_hash": np.uint64,
    **_TUNNEL_DTYPES,
}
# NOTE [tunnel columns]: where a packet came inside a tunnel (capture/decode.py decapsulates it),
# ``tunnel_key`` packs the innermost encapsulation's kind (top byte, 0: none) and, in its low 32
# bits, an identifier that is the same in both directions by design (VXLAN/Geneve VNI, PPPoE
# session; 0 for the other kinds); it is one more word of the flow key, compared in full.
# ``tunnel_id`` is the identifier as seen in the packet (also GRE key, ERSPAN session, GTP-U TEID,
# MPLS top label, PPTP call id, which may differ by direction) and ``outer_*`` the endpoints of the
# IP header that carried the innermost tunnel (zeros where there is none): metadata, not key. A
# flow carries its first packet's.
TUNNEL_COLUMNS = ("tunnel_key", "tunnel_id", "outer_src_hi", "outer_src_lo", "outer_dst_hi", "outer_dst_lo")
# Columns that may be left out when a table is built: they are then zeros.
_OPTIONAL = {*TUNNEL_COLUMNS, "agg_flows", "agg_pkts", "agg_bytes", "agg_srcs"}


def _fill_optional(obj: Any, spec: dict[str, Any], n: int) -> None:
    for name in _OPTIONAL.intersection(spec):
        if len(getattr(obj, name)) == 0 and n:
            object.__setattr__(obj, name, np.zeros(n, spec[name]))


def _zeros_u64() -> npt.NDArray[np.uint64]:
    return np.zeros(0, np.uint64)


def _zeros_i64() -> npt.NDArray[np.int64]:
    return np.zeros(0, np.int64)


def _zeros_u32() -> npt.NDArray[np.uint32]:
    return np.zeros(0, np.uint32)


@dataclass(frozen=True, slots=True)
class PacketTable:
    """One row per IP packet, in capture order.

    Addresses follow NOTE [addresses]. ``ip_len`` is the IP total length from the header (the
    original size, not the captured one). ``payload_len`` is the transport payload in bytes
    (``ip_len`` minus IP and transport headers, never negative). For ICMP/ICMPv6 ``src_port``
    and ``dst_port`` hold the type and code (Zeek's convention) and ``icmp_type``/``icmp_code``
    repeat them. ``has_ports`` is false where the transport header was not captured or the
    packet is a non-first fragment: its ports are then unknown (0). ``frag_offset`` is in bytes.
    ``dns_*`` describe the question name of a DNS message over UDP port 53 (``capture/dns.py``):
    text length, first label's length and character entropy (bits), hashes of the name and of
    its parent; zeros where the packet holds no readable name. ``tunnel_key`` identifies the
    tunnel the packet came through (0: none); it is one more word of the flow key. ``tunnel_id``
    and ``outer_*`` describe that tunnel (NOTE [tunnel columns]).
    """

    ts_ns: npt.NDArray[np.int64]
    src_hi: npt.NDArray[np.uint64]
    src_lo: npt.NDArray[np.uint64]
    dst_hi: npt.NDArray[np.uint64]
    dst_lo: npt.NDArray[np.uint64]
    src_port: npt.NDArray[np.uint16]
    dst_port: npt.NDArray[np.uint16]
    proto: npt.NDArray[np.uint8]
    ip_version: npt.NDArray[np.uint8]
    ip_len: npt.NDArray[np.uint32]
    payload_len: npt.NDArray[np.uint32]
    tcp_flags: npt.NDArray[np.uint8]
    tcp_window: npt.NDArray[np.uint16]
    icmp_type: npt.NDArray[np.uint8]
    icmp_code: npt.NDArray[np.uint8]
    ttl: npt.NDArray[np.uint8]
    ip_id: npt.NDArray[np.uint32]
    frag_offset: npt.NDArray[np.uint16]
    more_fragments: npt.NDArray[np.bool_]
    has_ports: npt.NDArray[np.bool_]
    file_id: npt.NDArray[np.int32]
    dns_qname_len: npt.NDArray[np.uint8]
    dns_label_len: npt.NDArray[np.uint8]
    dns_label_entropy: npt.NDArray[np.float32]
    dns_name_hash: npt.NDArray[np.uint64]
    dns_parent_hash: npt.NDArray[np.uint64]
    tunnel_key: npt.NDArray[np.uint64] = field(default_factory=_zeros_u64)
    tunnel_id: npt.NDArray[np.uint32] = field(default_factory=_zeros_u32)
    outer_src_hi: npt.NDArray[np.uint64] = field(default_factory=_zeros_u64)
    outer_src_lo: npt.NDArray[np.uint64] = field(default_factory=_zeros_u64)
    outer_dst_hi: npt.NDArray[np.uint64] = field(default_factory=_zeros_u64)
    outer_dst_lo: npt.NDArray[np.uint64] = field(default_factory=_zeros_u64)

    def __post_init__(self) -> None:
        _fill_optional(self, _PACKET_COLUMNS, len(self.ts_ns))
        _check_columns(self, _PACKET_COLUMNS, "packets")

    @property
    def n_packets(self) -> int:
        return len(self.ts_ns)

    def validate(self) -> None:
        if self.n_packets and np.any(self.payload_len > self.ip_len):
            raise ValueError("PacketTable.payload_len exceeds ip_len")

    @classmethod
    def empty(cls) -> PacketTable:
        return cls(**{name: np.empty(0, dtype=dt) for name, dt in _PACKET_COLUMNS.items()})

    @classmethod
    def concat(cls, tables: list[PacketTable]) -> PacketTable:
        if not tables:
            return cls.empty()
        if len(tables) == 1:
            return tables[0]
        return cls(**{f.name: np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(cls)})

    def take(self, idx: npt.NDArray[np.int64]) -> PacketTable:
        return type(self)(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def column_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in _PACKET_COLUMNS}


@dataclass(slots=True)
class SkipCounts:
    """Records read and skipped, by reason; counted per capture, never silently dropped."""

    records: int = 0
    packets: int = 0
    skipped: dict[str, int] | None = None
    warnings: list[str] | None = None
    truncated: bool = False
    # (skip code, value, link type) -> records: the reasons as data (netae.capture.skips.Skip);
    # ``skipped`` holds the same counts under their words, for people.
    codes: dict[tuple[int, int, int], int] | None = None

    def warn(self, message: str) -> None:
        if self.warnings is None:
            self.warnings = []
        self.warnings.append(message)

    def add(self, reason: str, n: int, *, code: tuple[int, int, int] | None = None) -> None:
        """Count ``n`` records skipped for ``reason`` (the words of ``skips.describe(*code)``)."""
        if n <= 0:
            return
        if self.skipped is None:
            self.skipped = {}
        self.skipped[reason] = self.skipped.get(reason, 0) + int(n)
        if code is not None:
            if self.codes is None:
                self.codes = {}
            self.codes[code] = self.codes.get(code, 0) + int(n)

    def merge(self, other: SkipCounts) -> None:
        self.records += other.records
        self.packets += other.packets
        for reason, n in (other.skipped or {}).items():
            self.add(reason, n)
        for code, n in (other.codes or {}).items():
            self.codes = self.codes or {}
            self.codes[code] = self.codes.get(code, 0) + n
        for message in other.warnings or []:
            self.warn(message)
        self.truncated = self.truncated or other.truncated

    @property
    def n_skipped(self) -> int:
        return sum((self.skipped or {}).values())


_FLOW_COLUMNS: dict[str, Any] = {
    "src_hi": np.uint64,
    "src_lo": np.uint64,
    "dst_hi": np.uint64,
    "dst_lo": np.uint64,
    "src_port": np.uint16,
    "dst_port": np.uint16,
    "proto": np.uint8,
    "ip_version": np.uint8,
    "first_ns": np.int64,
    "last_ns": np.int64,
    "fwd_pkts": np.int64,
    "bwd_pkts": np.int64,
    "fwd_bytes": np.int64,
    "bwd_bytes": np.int64,
    "file_id": np.int32,
    **_TUNNEL_DTYPES,
    "agg_flows": np.int64,
    "agg_pkts": np.int64,
    "agg_bytes": np.int64,
    "agg_srcs": np.int64,
}


@dataclass(frozen=True, slots=True)
class FlowTable:
    """One row per bidirectional flow, plus the packets of each flow (NOTE [ragged]).

    ``src`` is the initiator: the sender of the flow's first packet (fwd direction, defined in
    ``flows.py``). ``order`` lists PacketTable rows grouped by flow, in time order within a flow;
    ``offsets`` (n_flows + 1) delimits each flow's run of ``order``. ``is_fwd`` is aligned with
    ``order``. Bytes are sums of ``ip_len``. ``tunnel_key`` is the key word of the tunnel the
    flow came through (0: none); ``tunnel_id`` and ``outer_*`` describe the tunnel of its first
    packet (NOTE [tunnel columns]).

    A row with ``agg_flows`` > 0 is an aggregate of that many one-packet or handshake-only flows
    evicted under a flood (NOTE [flood cap] in ``flows.py``): its packet run is one representative
    packet, and ``agg_pkts``, ``agg_bytes`` and ``agg_srcs`` (distinct sources) count them all.
    """

    src_hi: npt.NDArray[np.uint64]
    src_lo: npt.NDArray[np.uint64]
    dst_hi: npt.NDArray[np.uint64]
    dst_lo: npt.NDArray[np.uint64]
    src_port: npt.NDArray[np.uint16]
    dst_port: npt.NDArray[np.uint16]
    proto: npt.NDArray[np.uint8]
    ip_version: npt.NDArray[np.uint8]
    first_ns: npt.NDArray[np.int64]
    last_ns: npt.NDArray[np.int64]
    fwd_pkts: npt.NDArray[np.int64]
    bwd_pkts: npt.NDArray[np.int64]
    fwd_bytes: npt.NDArray[np.int64]
    bwd_bytes: npt.NDArray[np.int64]
    file_id: npt.NDArray[np.int32]
    order: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    is_fwd: npt.NDArray[np.bool_]
    tunnel_key: npt.NDArray[np.uint64] = field(default_factory=_zeros_u64)
    tunnel_id: npt.NDArray[np.uint32] = field(default_factory=_zeros_u32)
    outer_src_hi: npt.NDArray[np.uint64] = field(default_factory=_zeros_u64)
    outer_src_lo: npt.NDArray[np.uint64] = field(default_factory=_zeros_u64)
    outer_dst_hi: npt.NDArray[np.uint64] = field(default_factory=_zeros_u64)
    outer_dst_lo: npt.NDArray[np.uint64] = field(default_factory=_zeros_u64)
    agg_flows: npt.NDArray[np.int64] = field(default_factory=_zeros_i64)
    agg_pkts: npt.NDArray[np.int64] = field(default_factory=_zeros_i64)
    agg_bytes: npt.NDArray[np.int64] = field(default_factory=_zeros_i64)
    agg_srcs: npt.NDArray[np.int64] = field(default_factory=_zeros_i64)

    def __post_init__(self) -> None:
        _fill_optional(self, _FLOW_COLUMNS, len(self.first_ns))
        n = _check_columns(self, _FLOW_COLUMNS, "flows")
        _check_dtype("FlowTable.order", self.order, np.int64)
        _check_dtype("FlowTable.is_fwd", self.is_fwd, np.bool_)
        if len(self.is_fwd) != len(self.order):
            raise ValueError("FlowTable.is_fwd must align with order")
        _check_offsets("FlowTable.offsets", self.offsets, n, len(self.order))

    @property
    def n_flows(self) -> int:
        return len(self.first_ns)

    @property
    def n_packets(self) -> npt.NDArray[np.int64]:
        return np.diff(self.offsets)

    def validate(self, n_table_packets: int | None = None) -> None:
        _validate_offsets("FlowTable.offsets", self.offsets)
        if self.n_flows and np.any(self.n_packets == 0):
            raise ValueError("FlowTable has an empty flow")
        if np.any(self.fwd_pkts + self.bwd_pkts != self.n_packets):
            raise ValueError("FlowTable packet counts disagree with offsets")
        if np.any(self.last_ns < self.first_ns):
            raise ValueError("FlowTable.last_ns before first_ns")
        if (
            n_table_packets is not None
            and len(self.order)
            and (self.order.min() < 0 or self.order.max() >= n_table_packets)
        ):
            raise ValueError("FlowTable.order points outside the packet table")

    @classmethod
    def empty(cls) -> FlowTable:
        cols = {name: np.empty(0, dtype=dt) for name, dt in _FLOW_COLUMNS.items()}
        return cls(
            **cols,
            order=np.empty(0, np.int64),
            offsets=np.zeros(1, np.int64),
            is_fwd=np.empty(0, np.bool_),
        )

    def column_dict(self) -> dict[str, np.ndarray]:
        """The per-flow columns (not the ragged packet index)."""
        return {name: getattr(self, name) for name in _FLOW_COLUMNS}


FLOW_COLUMNS = tuple(_FLOW_COLUMNS)


def concat_flow_parts(parts: list[tuple[PacketTable, FlowTable]]) -> tuple[PacketTable, FlowTable]:
    """Concatenate (packets, flows) pairs, shifting each flow's packet rows."""
    parts = [(p, f) for p, f in parts if f.n_flows]
    if not parts:
        return PacketTable.empty(), FlowTable.empty()
    if len(parts) == 1:
        return parts[0]
    packets = PacketTable.concat([p for p, _ in parts])
    base = np.cumsum([0] + [p.n_packets for p, _ in parts[:-1]])
    pkt_base = np.cumsum([0] + [len(f.order) for _, f in parts[:-1]])
    cols = {name: np.concatenate([f.column_dict()[name] for _, f in parts]) for name in FLOW_COLUMNS}
    order = np.concatenate([f.order + b for (_, f), b in zip(parts, base, strict=True)])
    offsets = np.concatenate([[0]] + [f.offsets[1:] + b for (_, f), b in zip(parts, pkt_base, strict=True)])
    is_fwd = np.concatenate([f.is_fwd for _, f in parts])
    return packets, FlowTable(**cols, order=order, offsets=offsets.astype(np.int64), is_fwd=is_fwd)


def canonical_order(flows: FlowTable) -> npt.NDArray[np.int64]:
    """A total order of flows: first packet time, then file and key (used wherever flows are laid
    out, so that streamed, chunked and one-pass featurizing give the same rows)."""
    return np.lexsort(
        (flows.tunnel_key, flows.proto, flows.dst_port, flows.dst_lo, flows.dst_hi, flows.src_port, flows.src_lo,
         flows.src_hi, flows.file_id, flows.first_ns)
    ).astype(np.int64)  # fmt: skip


def reorder_flows(flows: FlowTable, rank: npt.NDArray[np.int64]) -> tuple[FlowTable, npt.NDArray[np.int64]]:
    """Flows in ``rank`` order with their packet runs; also the packet-row permutation used."""
    lengths = flows.n_packets[rank]
    offsets = np.zeros(len(rank) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    starts = flows.offsets[:-1][rank]
    idx = np.repeat(starts, lengths) + (np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths))
    cols = {name: arr[rank] for name, arr in flows.column_dict().items()}
    return FlowTable(**cols, order=flows.order[idx], offsets=offsets, is_fwd=flows.is_fwd[idx]), idx


@dataclass(frozen=True, slots=True)
class Features:
    """Per-packet features in flow order, sharing the flows' offsets (NOTE [ragged]).

    ``values`` is float32 ``(n_packets, n_features)``; rows of flow ``i`` are
    ``values[offsets[i]:offsets[i + 1]]``. Flow-level and context inputs are broadcast to every
    packet of their flow as extra columns, so the model sees one matrix.
    """

    values: npt.NDArray[np.float32]
    offsets: npt.NDArray[np.int64]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_dtype("Features.values", self.values, np.float32)
        if self.values.ndim != 2 or self.values.shape[1] != len(self.names):
            raise ValueError("Features.values must be (n_packets, len(names))")
        n_flows = len(self.offsets) - 1
        _check_offsets("Features.offsets", self.offsets, n_flows, len(self.values))

    @property
    def n_flows(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        return np.diff(self.offsets)

    def validate(self) -> None:
        _validate_offsets("Features.offsets", self.offsets)
        if not np.all(np.isfinite(self.values)):
            raise ValueError("Features hold NaN or infinite values")


def parse_ip(text: str) -> tuple[int, int]:
    """Text address to (hi, lo) halves of its 16-byte form (NOTE [addresses])."""
    addr = ipaddress.ip_address(text)
    if isinstance(addr, ipaddress.IPv4Address):
        addr = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + addr.packed)
    value = int(addr)
    return value >> 64, value & 0xFFFFFFFFFFFFFFFF


def format_ip(hi: int, lo: int) -> str:
    """(hi, lo) halves back to text; IPv4-mapped addresses print as dotted quads."""
    hi, lo = int(hi), int(lo)
    if hi == 0 and (lo >> 32) == 0xFFFF:
        return str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))


def format_ips(hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]) -> list[str]:
    """Vectorised-enough formatting for output columns: one string per row, cached per address."""
    cache: dict[tuple[int, int], str] = {}
    out: list[str] = []
    for h, low in zip(hi.tolist(), lo.tolist(), strict=True):
        key = (h, low)
        s = cache.get(key)
        if s is None:
            s = cache[key] = format_ip(h, low)
        out.append(s)
    return out


@dataclass(frozen=True, slots=True)
class ScoreTable:
    """Scored flows: what every output format writes (one table feeds every writer).

    Per flow: ``score`` (the worst window's mean per-packet reconstruction error), ``is_anomaly``
    (score above ``threshold``), the worst packets (``worst_idx``: up to k packet positions within
    the flow, -1 padded, shape (n_flows, k); their times, directions and sizes alongside) and the
    features that contributed most (``top_features``: column indices into ``feature_names``,
    shape (n_flows, k)). ``explanations`` is a per-flow plain-words context note ('' if none).
    ``incidents`` gathers the flagged flows into ranked incidents (``incidents.py``), when found.
    """

    flows: FlowTable
    score: npt.NDArray[np.float32]
    is_anomaly: npt.NDArray[np.bool_]
    threshold: float
    files: tuple[str, ...]
    model_id: str
    worst_idx: npt.NDArray[np.int64]
    worst_ts_ns: npt.NDArray[np.int64]
    worst_is_fwd: npt.NDArray[np.bool_]
    worst_ip_len: npt.NDArray[np.int64]
    worst_error: npt.NDArray[np.float32]
    top_features: npt.NDArray[np.int64]
    feature_names: tuple[str, ...]
    explanations: tuple[str, ...] = ()
    incidents: Incidents | None = None

    @property
    def n_flows(self) -> int:
        return len(self.score)
