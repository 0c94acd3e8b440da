"""The committed sample captures: reproducible, small, well-formed, and labelled flow by flow."""

from __future__ import annotations

import csv
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dpkt
import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"
GENERATED = (
    "normal/office_a.pcap",
    "normal/office_b.pcapng",
    "mixed.pcap",
    "mixed_labels.csv",
)
ATTACKER = "10.10.0.200"
ANOMALIES = {"port_scan", "syn_flood", "slow_drip", "large_upload"}
SNAPLEN = 96
IDLE_US = 120_000_000

Key = tuple[str, int, str, int, int]  # src ip, src port, dst ip, dst port, protocol


def _pcap_records(path: Path) -> list[tuple[int, int, bytes]]:
    """(timestamp in µs, original length, captured bytes) of each record of a classic µs pcap."""
    data = path.read_bytes()
    magic, _, _, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    assert (magic, snaplen, linktype) == (0xA1B2C3D4, SNAPLEN, 1)
    out, pos = [], 24
    while pos < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, pos)
        out.append((sec * 1_000_000 + usec, orig, data[pos + 16 : pos + 16 + incl]))
        pos += 16 + incl
    assert pos == len(data)
    return out


def _pcapng_records(path: Path) -> list[tuple[int, int, bytes]]:
    """The same from a little-endian pcapng with µs timestamps (the default resolution)."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        if btype == 1:
            assert struct.unpack_from("<HHI", data, pos + 8) == (1, 0, SNAPLEN)
        elif btype == 6:
            _, hi, lo, incl, orig = struct.unpack_from("<IIIII", data, pos + 8)
            out.append(((hi << 32) | lo, orig, data[pos + 28 : pos + 28 + incl]))
        pos += blen
    assert pos == len(data)
    return out


def _decode(frame: bytes) -> tuple[str, str, int, int, int, int]:
    """(src, dst, protocol, src port, dst port, IP length) of an Ethernet frame, VLAN tag allowed."""
    off, ethertype = 14, struct.unpack_from("!H", frame, 12)[0]
    if ethertype == 0x8100:
        ethertype = struct.unpack_from("!H", frame, 16)[0]
        off = 18
    if ethertype == 0x0800:
        ihl = (frame[off] & 0x0F) * 4
        ip_len, proto = struct.unpack_from("!H", frame, off + 2)[0], frame[off + 9]
        src, dst = (
            dpkt.utils.inet_to_str(frame[off + 12 : off + 16]),
            dpkt.utils.inet_to_str(frame[off + 16 : off + 20]),
        )
        l4 = off + ihl
    else:
        assert ethertype == 0x86DD
        ip_len, proto = 40 + struct.unpack_from("!H", frame, off + 4)[0], frame[off + 6]
        src, dst = dpkt.utils.inet_to_str(frame[off + 8 : off + 24]), dpkt.utils.inet_to_str(frame[off + 24 : off + 40])
        l4 = off + 40
    sp, dp = struct.unpack_from("!HH", frame, l4) if proto in (6, 17) else (0, 0)
    return src, dst, proto, sp, dp, ip_len


def _flows(records: list[tuple[int, int, bytes]]) -> dict[tuple[Key, int], tuple[int, int, int]]:
    """Flows by the eval README rule: {(key as first seen, first µs): (last µs, packets, IP bytes)}."""
    active: dict[tuple[object, ...], list[object]] = {}
    done: list[list[object]] = []
    for ts, _, frame in records:
        src, dst, proto, sp, dp, ip_len = _decode(frame)
        a, b = (src, sp), (dst, dp)
        k = (proto, a, b) if a <= b else (proto, b, a)
        fl = active.get(k)
        if fl is not None and ts - fl[2] > IDLE_US:  # type: ignore[operator]
            done.append(fl)
            fl = None
        if fl is None:
            fl = [(src, sp, dst, dp, proto), ts, ts, 0, 0]
            active[k] = fl
        fl[2] = ts
        fl[3] += 1  # type: ignore[operator]
        fl[4] += ip_len  # type: ignore[operator]
    done.extend(active.values())
    return {(f[0], f[1]): (f[2], f[3], f[4]) for f in done}  # type: ignore[misc]


def _us(text: str) -> int:
    sec, frac = text.split(".")
    assert len(frac) == 6
    return int(sec) * 1_000_000 + int(frac)


def _labels() -> list[dict[str, str]]:
    with (SAMPLES / "mixed_labels.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_generator_rewrites_identical_files(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(SAMPLES / "generate.py"), "--out", str(tmp_path)], check=True, capture_output=True
    )
    for name in GENERATED:
        assert (tmp_path / name).read_bytes() == (SAMPLES / name).read_bytes(), name


def test_samples_folder_is_small() -> None:
    files = [p for p in SAMPLES.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert sum(p.stat().st_size for p in files) < 3_000_000


@pytest.mark.parametrize("name", ["normal/office_a.pcap", "mixed.pcap"])
def test_classic_records_keep_original_lengths(name: str) -> None:
    records = _pcap_records(SAMPLES / name)
    assert all(len(frame) == min(orig, SNAPLEN) for _, orig, frame in records)
    assert all(orig == 14 + _decode(frame)[5] for _, orig, frame in records)
    assert [ts for ts, _, _ in records] == sorted(ts for ts, _, _ in records)


def test_pcapng_has_vlan_and_ipv6() -> None:
    records = _pcapng_records(SAMPLES / "normal/office_b.pcapng")
    assert all(struct.unpack_from("!HH", frame, 12) == (0x8100, 20) for _, _, frame in records)
    ethertypes = Counter(struct.unpack_from("!H", frame, 16)[0] for _, _, frame in records)
    assert ethertypes[0x0800] > 0
    assert ethertypes[0x86DD] > 0
    assert all(len(frame) == min(orig, SNAPLEN) for _, orig, frame in records)
    assert all(orig == 18 + _decode(frame)[5] for _, orig, frame in records)


def test_label_rows_are_the_flows_of_the_capture() -> None:
    flows = _flows(_pcap_records(SAMPLES / "mixed.pcap"))
    rows = _labels()
    labelled = {
        (
            (r["src_ip"], int(r["src_port"]), r["dst_ip"], int(r["dst_port"]), int(r["protocol"])),
            _us(r["first_seen"]),
        ): (
            _us(r["last_seen"]),
            int(r["packets"]),
            int(r["bytes"]),
        )
        for r in rows
    }
    assert len(labelled) == len(rows)
    assert labelled == flows
    assert [_us(r["first_seen"]) for r in rows] == sorted(_us(r["first_seen"]) for r in rows)


def test_mixed_capture_holds_every_anomaly_from_the_attacker_only() -> None:
    rows = _labels()
    assert list(rows[0]) == [
        "src_ip",
        "src_port",
        "dst_ip",
        "dst_port",
        "protocol",
        "first_seen",
        "last_seen",
        "packets",
        "bytes",
        "label",
    ]
    counts = Counter(r["label"] for r in rows)
    assert set(counts) == ANOMALIES | {"benign"}
    for r in rows:
        assert (r["label"] != "benign") == (ATTACKER in (r["src_ip"], r["dst_ip"])), r
    assert counts["slow_drip"] + counts["large_upload"] < counts["benign"]
    upload = next(r for r in rows if r["label"] == "large_upload")
    assert int(upload["bytes"]) > 2_000_000
    drips = [r for r in rows if r["label"] == "slow_drip"]
    assert all(_us(r["last_seen"]) - _us(r["first_seen"]) > 60_000_000 for r in drips)


def test_normal_captures_hold_enough_benign_flows() -> None:
    a = _flows(_pcap_records(SAMPLES / "normal/office_a.pcap"))
    b = _flows(_pcapng_records(SAMPLES / "normal/office_b.pcapng"))
    assert 1500 <= len(a) + len(b) <= 3000
    keys = [k for k, _ in a] + [k for k, _ in b]
    assert not any(ATTACKER in (k[0], k[2]) for k in keys)
    assert {k[4] for k in keys} >= {1, 6, 17, 58}


@pytest.mark.parametrize("name", ["normal/office_a.pcap", "normal/office_b.pcapng", "mixed.pcap"])
def test_scapy_dissects_frames_and_agrees_with_checksums(name: str) -> None:
    """Every 10th uncut frame: scapy finds the layers, and its checksum code agrees with ours."""
    from scapy.layers.inet import IP, in4_chksum
    from scapy.layers.inet6 import IPv6, in6_chksum
    from scapy.layers.l2 import Ether
    from scapy.utils import checksum

    path = SAMPLES / name
    records = _pcapng_records(path) if path.suffix == ".pcapng" else _pcap_records(path)
    whole = [frame for _, orig, frame in records if orig == len(frame)][::10]
    assert len(whole) > 100
    for frame in whole:
        src, dst, proto, sp, dp, ip_len = _decode(frame)
        pkt = Ether(frame)
        ip = pkt[IP] if IP in pkt else pkt[IPv6]
        assert (ip.src, ip.dst) == (src, dst)
        l4 = bytes(ip.payload.original)
        assert len(l4) == ip_len - (20 if IP in pkt else 40)
        ck_at = {6: 16, 17: 6, 1: 2, 58: 2}[proto]
        zeroed = l4[:ck_at] + b"\0\0" + l4[ck_at + 2 :]
        stored = struct.unpack_from("!H", l4, ck_at)[0]
        if IP in pkt:
            assert checksum(frame[len(frame) - ip_len : len(frame) - ip_len + 20]) == 0
            want = checksum(zeroed) if proto == 1 else in4_chksum(proto, ip, zeroed)
        else:
            want = in6_chksum(proto, ip, zeroed)
        if proto == 17 and want == 0:
            want = 0xFFFF
        assert want == stored, (name, pkt.summary())
        if proto in (6, 17):
            assert (ip.payload.sport, ip.payload.dport) == (sp, dp)
