"""The reader: formats, byte orders, resolutions, compression, chunking, damage and hostile bytes."""

from __future__ import annotations

import bz2
import io
import lzma
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netae.capture import _walk, read_packets
from netae.capture.linktypes import DLT_EN10MB, DLT_LINUX_SLL, DLT_RAW
from netae.errors import CaptureError, InputError, NotACapture
from netae.tables import PacketTable, SkipCounts
from tests.helpers.pcapgen import Interface, Record, Section, gzip_bytes, pcap_bytes, pcapng_bytes
from tests.reference import walk_struct

T0 = 1_700_000_000_123_456_789


def ipv4_udp(i: int, payload: int = 10) -> bytes:
    """An IPv4/UDP packet with source port 1000 + i."""
    total = 28 + payload
    ip = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, total, i & 0xFFFF, 0, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    )
    return ip + struct.pack(">HHHH", 1000 + i, 53, 8 + payload, 0) + bytes(payload)


def ether(i: int, payload: int = 10) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ipv4_udp(i, payload)


def sll(i: int) -> bytes:
    return b"\0\0\0\x01\0\x06" + b"\x02" * 6 + b"\0\0" + b"\x08\x00" + ipv4_udp(i)


def records(n: int, step_ns: int = 1_000_001_001) -> list[Record]:
    return [Record(ether(i, payload=i % 50), ts_ns=T0 + i * step_ns) for i in range(n)]


def read(data: bytes | Path | io.IOBase, **kw) -> tuple[PacketTable, SkipCounts]:
    counts = SkipCounts()
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    table = PacketTable.concat(list(read_packets(src, counts=counts, **kw)))
    table.validate()
    return table, counts


class NonSeekable(io.RawIOBase):
    """A pipe-like stream: short reads, no seek, no tell."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), 777, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanosecond", [False, True])
def test_pcap_byte_orders_and_resolutions(big_endian: bool, nanosecond: bool) -> None:
    recs = records(20)
    table, counts = read(pcap_bytes(recs, big_endian=big_endian, nanosecond=nanosecond))
    assert table.src_port.tolist() == [1000 + i for i in range(20)]
    div = 1 if nanosecond else 1000
    assert table.ts_ns.tolist() == [r.ts_ns // div * div for r in recs]
    assert (counts.records, counts.packets, counts.truncated) == (20, 20, False)


def test_pcapng_sections_interfaces_and_resolutions() -> None:
    s1 = Section(
        interfaces=(Interface(DLT_EN10MB), Interface(DLT_RAW, tsresol=9), Interface(DLT_LINUX_SLL, tsresol=0x80 | 30)),
        records=(
            Record(ether(0), ts_ns=T0, iface=0),
            Record(ipv4_udp(1), ts_ns=T0 + 1, iface=1),
            Record(sll(2), ts_ns=T0 + 2, iface=2),
            Record(ether(3), ts_ns=T0 + 3, block="pb"),
        ),
        unknown_blocks=2,
    )
    s2 = Section(
        interfaces=(Interface(DLT_RAW, tsresol=3, tsoffset_s=1_000_000),),
        records=(
            Record(ipv4_udp(4), ts_ns=T0 + 4),
            Record(ipv4_udp(5), block="spb"),
            Record(ipv4_udp(6), ts_ns=T0 + 5),
        ),
        big_endian=True,
        unknown_blocks=1,
    )
    table, counts = read(pcapng_bytes([s1, s2]))
    assert table.src_port.tolist() == [1000, 1001, 1002, 1003, 1004, 1005, 1006]
    ms = T0 // 1_000_000 * 1_000_000
    binary = (T0 + 2) * (1 << 30) // 1_000_000_000
    assert table.ts_ns.tolist() == [
        T0 // 1000 * 1000,  # default microseconds
        T0 + 1,  # nanoseconds
        pytest.approx((binary * 1_000_000_000) >> 30, abs=1),  # 2^-30 s
        (T0 + 3) // 1000 * 1000,  # obsolete packet block
        ms,  # milliseconds with an offset
        ms,  # simple packet block: no timestamp, the last one carries over
        ms,
    ]
    assert counts.records == 7
    assert not counts.truncated


def test_pcapng_undeclared_interface_is_counted() -> None:
    s = Section(records=(Record(ether(0)), Record(ether(1), iface=5)))
    table, counts = read(pcapng_bytes([s]))
    assert table.n_packets == 1
    assert counts.skipped == {"packet on an undeclared pcapng interface": 1}


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("compress", [None, "gzip", "bzip2", "xz"])
def test_compressed_and_non_seekable(fmt: str, compress: str | None) -> None:
    recs = records(300)
    data = pcap_bytes(recs) if fmt == "pcap" else pcapng_bytes([Section(records=recs)])
    if compress == "gzip":
        data = gzip_bytes(data)
    elif compress == "bzip2":
        data = bz2.compress(data)
    elif compress == "xz":
        data = lzma.compress(data)
    expected, _ = read(data)
    assert expected.n_packets == 300
    table, counts = read(NonSeekable(data), chunk_bytes=1 << 10)
    assert table.src_port.tolist() == expected.src_port.tolist()
    assert table.ts_ns.tolist() == expected.ts_ns.tolist()
    assert not counts.truncated


def test_path_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "no-extension"
    path.write_bytes(gzip_bytes(pcap_bytes(records(5))))
    assert read(path)[0].n_packets == 5
    with pytest.raises(InputError, match="missing"):
        list(read_packets(tmp_path / "missing.pcap"))


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("chunk_bytes", [1, 1 << 10, 3000, 1 << 20])
def test_chunking_gives_the_same_packets(fmt: str, chunk_bytes: int) -> None:
    recs = records(500)
    data = pcap_bytes(recs) if fmt == "pcap" else pcapng_bytes([Section(records=recs, unknown_blocks=3)])
    whole, _ = read(data)
    tables = list(read_packets(io.BytesIO(data), chunk_bytes=chunk_bytes))
    if chunk_bytes <= 3000:
        assert len(tables) > 1
    joined = PacketTable.concat(tables)
    for name in ("ts_ns", "src_port", "ip_len", "payload_len", "ip_id"):
        assert getattr(joined, name).tolist() == getattr(whole, name).tolist()


def test_pcap_cut_at_every_offset() -> None:
    recs = records(4)
    data = pcap_bytes(recs)
    ends = np.cumsum([24] + [16 + len(r.data) for r in recs]).tolist()
    for cut in range(len(data) + 1):
        if cut < 24:
            with pytest.raises(NotACapture, match="x.pcap"):
                list(read_packets(_named(data[:cut], "x.pcap")))
            continue
        table, counts = read(data[:cut])
        complete = sum(e <= cut for e in ends[1:])
        assert table.n_packets == complete
        assert counts.truncated == (cut not in ends)
        if counts.truncated:
            assert counts.warnings is not None
            assert f"record {complete + 1}" in counts.warnings[0]


def test_pcapng_cut_at_every_offset() -> None:
    recs = records(3)
    data = pcapng_bytes([Section(records=recs)])
    shb = 28
    idb = 20
    epbs = [32 + len(r.data) + (-len(r.data) % 4) for r in recs]
    ends = np.cumsum([shb, idb] + epbs).tolist()
    for cut in range(len(data) + 1):
        if cut < shb:
            with pytest.raises(NotACapture):
                read(data[:cut])
            continue
        table, counts = read(data[:cut])
        assert table.n_packets == sum(e <= cut for e in ends[2:])
        assert counts.truncated == (cut not in ends)


def _walk_outputs(n: int) -> tuple[np.ndarray, ...]:
    return (np.zeros(n, np.int64), *(np.zeros(n, np.uint32) for _ in range(4)), np.zeros(n, np.int32))


@pytest.mark.parametrize("big", [False, True])
def test_compiled_walkers_match_the_struct_oracle(big: bool) -> None:
    """Both walkers, on every prefix of a pcap and a pcapng buffer (records after the headers)."""
    recs = records(5)
    pcap = np.frombuffer(pcap_bytes(recs, big_endian=big), np.uint8)
    ng = np.frombuffer(pcapng_bytes([Section(records=recs, big_endian=big)]), np.uint8)
    for cut in range(24, len(pcap) + 1):
        outs = [_walk_outputs(8), _walk_outputs(8)]
        got = [
            tuple(int(x) for x in w(pcap, 24, cut, big, 16, 1 << 16, *o[:5]))
            for w, o in zip((_walk.walk_pcap, walk_struct.walk_pcap), outs, strict=True)
        ]
        assert got[0] == got[1]
        for a, b in zip(*outs, strict=True):
            np.testing.assert_array_equal(a[: got[0][0]], b[: got[0][0]])
    for cut in range(48, len(ng) + 1):
        outs = [_walk_outputs(8), _walk_outputs(8)]
        got = [
            tuple(int(x) for x in w(ng, 48, cut, big, 1 << 16, 0, 0, *o))
            for w, o in zip((_walk.walk_pcapng, walk_struct.walk_pcapng), outs, strict=True)
        ]
        assert got[0] == got[1]
        for a, b in zip(*outs, strict=True):
            np.testing.assert_array_equal(a[: got[0][0]], b[: got[0][0]])


def test_gzip_cut_short_keeps_packets_before() -> None:
    data = gzip_bytes(pcap_bytes(records(2000)))
    table, counts = read(data[: len(data) * 2 // 3])
    assert 0 < table.n_packets < 2000
    assert counts.truncated
    assert counts.warnings is not None


@pytest.mark.parametrize("length", [0xF0000000, (16 << 20) + 1, (256 << 10) + 1])
def test_absurd_record_length(length: int) -> None:
    data = bytearray(pcap_bytes(records(5)))
    pos = 24 + sum(16 + len(ether(i, i % 50)) for i in range(3))
    data[pos + 8 : pos + 12] = struct.pack("<I", length)
    table, counts = read(bytes(data))
    assert table.n_packets == 3
    assert counts.truncated
    assert counts.warnings is not None
    assert "record 4" in counts.warnings[0]


def test_snaplen_allows_long_records() -> None:
    rec = Record(ether(0) + bytes(300_000))
    table, counts = read(pcap_bytes([rec], snaplen=400_000))
    assert table.n_packets == 1
    assert not counts.truncated


def _named(data: bytes, name: str) -> io.BytesIO:
    f = io.BytesIO(data)
    f.name = name  # type: ignore[attr-defined]
    return f


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty file"),
        (b"\xd4\xc3\xb2", "too short"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "header cut short"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 0, 0, 0, 65535, 1), "unsupported pcap version 3.0"),
        (b"GET / HTTP/1.1\r\n", "text"),
        (b"\x28\xb5\x2f\xfd" + bytes(40), "zstd"),
        (b"\x7fELF" + bytes(40), "ELF"),
        (bytes(range(1, 60)), "bad magic"),
        (gzip_bytes(b"hello world, not a capture"), "gzip-compressed"),
        (gzip_bytes(b""), "too short"),
        (b"\x1f\x8b\x08\x00garbage", "x.cap"),
        (pcapng_bytes([Section(version=(2, 0))]), "unsupported pcapng version 2.0"),
        (b"\x0a\x0d\x0d\x0a" + bytes(24), "byte-order"),
    ],
)
def test_not_a_capture(data: bytes, match: str) -> None:
    with pytest.raises(NotACapture, match=match) as info:
        list(read_packets(_named(data, "x.cap")))
    assert "x.cap" in str(info.value)


def _read_hostile(data: bytes, chunk_bytes: int = 1 << 10) -> None:
    counts = SkipCounts()
    try:
        for table in read_packets(io.BytesIO(data), counts=counts, chunk_bytes=chunk_bytes):
            table.validate()
            assert table.n_packets > 0
    except CaptureError:
        return
    assert counts.packets <= counts.records


_MAGICS = [b"", b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00", b"\xa1\xb2\x3c\x4d\x00\x02\x00\x04", b"\x0a\x0d\x0d\x0a"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(_MAGICS), body=st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_capture_errors(prefix: bytes, body: bytes) -> None:
    _read_hostile(prefix + body)


def _valid_files() -> list[bytes]:
    recs = records(6)
    frames = [Record(d, ts_ns=T0) for d in (ether(1), sll(2), ipv4_udp(3))]
    return [
        pcap_bytes(recs),
        pcap_bytes(recs, big_endian=True, nanosecond=True),
        pcap_bytes(frames[2:], linktype=DLT_RAW),
        pcapng_bytes(
            [
                Section(
                    interfaces=(Interface(), Interface(DLT_LINUX_SLL, tsresol=0x85)),
                    records=(frames[0], Record(sll(2), iface=1)),
                ),
                Section(records=recs[:2], big_endian=True, unknown_blocks=1),
            ]
        ),
    ]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, 3),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.integers(0, 10_000),
    gz=st.booleans(),
)
def test_mutated_valid_files_raise_only_capture_errors(which: int, edits, cut: int, gz: bool) -> None:
    data = bytearray(_valid_files()[which])
    for pos, value in edits:
        data[pos % len(data)] = value
    out = bytes(data[: max(cut, len(data) // 2)])
    _read_hostile(gzip_bytes(out) if gz else out)


def test_timestamps_out_of_range_are_skipped_not_wrapped() -> None:
    # NOTE [time range]: a wrapped 64-bit time or an absurd if_tsoffset would overflow later
    # int64 arithmetic (flow gaps, durations, context windows); such records are skipped.
    good = [Record(ether(i), ts_ns=T0 + i * 1000) for i in range(3)]
    wrapped = Record(ether(3), ts_ns=1 << 63)
    data = pcapng_bytes([Section(interfaces=[Interface(tsresol=9)], records=[*good, wrapped])])
    table, counts = read(data)
    assert table.n_packets == 3
    assert counts.skipped == {"timestamp out of range": 1}
    offset_s = 1 << 40  # clamped on reading, so no overflow warning either
    recs = [Record(ether(i), ts_ns=T0 + offset_s * 10**9) for i in range(2)]
    data = pcapng_bytes([Section(interfaces=[Interface(tsoffset_s=offset_s)], records=recs)])
    table, counts = read(data)
    assert table.n_packets == 0
    assert counts.skipped == {"timestamp out of range": 2}
