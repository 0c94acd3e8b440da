"""Capture reading and packet decoding: pcap/pcapng files in, PacketTables out.

``read_packets`` is the public entry point; ``read_records`` and ``decode_records`` are its two
stages, exposed for tests and benchmarks.
"""

from __future__ import annotations

from netae.capture.decode import decode_records
from netae.capture.reader import read_packets, read_records

__all__ = ["decode_records", "read_packets", "read_records"]
