"""Cut, splice and rebuild sample captures for fault and fuzz tests (classic pcap only)."""

from __future__ import annotations

import struct

__all__ = ["frame_udp", "pcap_prefix", "record_ends"]


def record_ends(data: bytes) -> list[int]:
    """Byte offsets where each complete record of a little-endian µs pcap ends."""
    ends = []
    pos = 24
    while pos + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        if pos + 16 + caplen > len(data):
            break
        pos += 16 + caplen
        ends.append(pos)
    return ends


def pcap_prefix(data: bytes, n_records: int) -> bytes:
    """The file header and the first ``n_records`` records."""
    ends = record_ends(data)
    return data[: ends[n_records - 1]] if n_records else data[:24]


def frame_udp(src: int, dst: int, sport: int, dport: int, payload: int = 20) -> bytes:
    """Ethernet + IPv4 + UDP; ``src``/``dst`` are the last octet of 10.0.0.x."""
    ip_len = 20 + 8 + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, ip_len, 0, 0, 64, 17, 0, bytes([10, 0, 0, src]), bytes([10, 0, 0, dst]))
    udp = struct.pack(">HHHH", sport, dport, 8 + payload, 0)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + udp + bytes(payload)
